"""Stage 5 of benchmarks/gpu_session.sh: OUTDIR from the stages' results in the work folder.

    python benchmarks/gpu_summary.py --work .gpu_site/work --out OUTDIR [--elapsed S] [--dry-run]

OUTDIR gets at most five files, none over 16 MiB: summary.json (every figure and each stage's exit
status and time), summary.md (the same for people), env.txt, logs.tar.gz (stage logs, the GPU tests'
JUnit report, the speed runs' JSON) and records.tar.gz (the `fashionlab record` folders,
experiments/<name>/, to commit as experiments/<name>). Stages that did not run are reported as such.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MAX_FILE = 16 * 1024 * 1024
TARGETS = {  # (figure, at least)
    "fmnist_best_h200": [("test/article/acc", 0.955)],
    "fmnist_retrieval_h200": [("retrieval/article/P@1", 0.95), ("retrieval/article/mAP@R", 0.90)],
    "speed": [("train_ratio", 0.95)],
}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stages(work: Path) -> list[dict]:
    path = work / "stages.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def test_counts(work: Path) -> dict | None:
    """The GPU tier's counts, summed over its runs (gpu_tests.xml, gpu_compile.xml)."""
    paths = [p for p in (work / "gpu_tests.xml", work / "gpu_compile.xml") if p.is_file()]
    if not paths:
        return None
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for path in paths:
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return counts


def recipe_results(work: Path, name: str) -> dict | None:
    run = work / "runs" / name
    metrics = read_json(run / "metrics.json")
    if metrics is None:
        return None
    out = {k: metrics.get(k) for k in ("test/article/acc", "val/article/acc", "test/category/acc",
                                       "epochs_completed", "global_step", "train_images_per_s", "fit_s",
                                       "duration_s", "backbone")}
    report = read_json(run / "eval" / "session" / "report.json")
    if report and report.get("retrieval"):
        article = report["retrieval"]["metrics"].get("article", {})
        out["retrieval/article/P@1"] = article.get("precision_at_1")
        out["retrieval/article/mAP@R"] = article.get("map_at_r")
    return out


def check(figures: dict | None, name: str) -> list[dict]:
    rows = []
    for key, goal in TARGETS.get(name, []):
        value = (figures or {}).get(key)
        rows.append({"figure": f"{name}: {key}", "value": value, "target": goal,
                     "met": None if value is None else bool(value >= goal)})
    return rows


def tar(out: Path, name: str, folder: Path, members: list[Path]) -> str | None:
    members = [m for m in members if m.exists()]
    if not members:
        return None
    path = out / name
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            archive.add(member, arcname=str(member.relative_to(folder)))
    if path.stat().st_size > MAX_FILE:
        path.unlink()
        return f"{name} left out: over 16 MiB"
    return None


def markdown(summary: dict) -> str:
    lines = [f"# GPU session{' (dry run, CPU, toy size)' if summary['dry_run'] else ''}", "",
             f"Wall time: {summary['elapsed_s']} s.", "", "## Targets", "",
             "| figure | value | target | met |", "|---|---|---|---|"]
    for row in summary["targets"]:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        met = {True: "yes", False: "no", None: "not run"}[row["met"]]
        lines.append(f"| {row['figure']} | {value} | >= {row['target']} | {met} |")
    speed = summary.get("speed") or {}
    lines += ["", "## Speed", ""]
    for who in ("fashionlab", "timm"):
        rate = (speed.get(who) or {}).get("images_per_s")
        lines.append(f"- {who} train.py: {rate:.1f} images/s" if rate else f"- {who} train.py: not measured")
    embed = speed.get("embed") or {}
    if embed.get("bare_images_per_s"):
        lines.append(f"- embedding extraction {embed['extract_images_per_s']:.0f} images/s vs bare forward "
                     f"{embed['bare_images_per_s']:.0f} images/s (ratio {embed['ratio_median']:.3f})")
    lines += ["", "## GPU tests", "", f"{summary.get('gpu_tests')}", "", "## Stages", "",
              "| stage | exit | seconds | budget |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['rc']} | {s['seconds']} | {s['budget_s']} |" for s in summary["stages"]]
    lines += ["", "## Environment", "", "```", json.dumps(summary.get("env"), indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--elapsed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    work, out = args.work, args.out
    out.mkdir(parents=True, exist_ok=True)
    speed = read_json(work / "speed" / "speed.json")
    recipes = {name: recipe_results(work, name) for name in ("fmnist_best_h200", "fmnist_retrieval_h200")}
    summary = {"dry_run": args.dry_run, "elapsed_s": args.elapsed, "env": read_json(work / "env.json"),
               "stages": stages(work), "gpu_tests": test_counts(work), "speed": speed, "recipes": recipes,
               "targets": [*check(speed, "speed"), *[r for n, f in recipes.items() for r in check(f, n)]]}
    notes = [tar(out, "logs.tar.gz", work, [work / "logs", work / "gpu_tests.xml", work / "gpu_compile.xml",
                                            *sorted((work / "speed").glob("*.json")),
                                            *sorted((work / "speed").glob("*.log"))]),
             tar(out, "records.tar.gz", work, [work / "records"])]
    summary["left_out"] = [n for n in notes if n]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    env = summary["env"] or {}
    (out / "env.txt").write_text("\n".join(f"{k}: {v}" for k, v in env.items()) + "\n")
    print(markdown(summary))


if __name__ == "__main__":
    main()
