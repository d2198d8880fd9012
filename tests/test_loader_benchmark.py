"""benchmarks/loader.py --quick runs end to end: photos written, every path measured, the JSON
result and the final line in their documented form (no timing is asserted)."""

import json
import re
import sys

import pytest

from conftest import ROOT, fork_script, run_script


@pytest.mark.slow
def test_loader_benchmark_quick(tmp_path):
    result = fork_script(str(ROOT / "benchmarks" / "loader.py"), "--quick", "--out", str(tmp_path / "photos"),
                         "--results", str(tmp_path / "results"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"cache/plain per-core speed-up: (n/a|\d+\.\dx), reduced-decode/plain: \d+\.\dx, "
                        r"cached images/s per core: (n/a|\d+)", lines[-1]), lines[-1]
    (path,) = (tmp_path / "results").glob("*/result.json")
    data = json.loads(path.read_text())
    assert {"plain", "reduced", "cache", "cache-jpeg"} <= set(data["paths"])
    assert lines[-1].startswith("cache/plain per-core speed-up: ") and "n/a" not in lines[-1]
    assert set(data["caches"]) == {"raw", "jpeg"}
    assert all(row["images_per_s"] > 0 and row["items"] > 0 for row in data["paths"].values())
    assert set(data["train_step"]) == {"resnet50", "efficientnet_lite0"}
    assert data["photos"]["n"] == 40 and data["photos"]["size"] == [1800, 2400]
    assert len(list((tmp_path / "photos" / "images").glob("*.jpg"))) == 40
    assert data["image_size"] == 224 and data["ratios"]["reduced/plain"] > 0


def test_photo_data_command_line(tmp_path, capsys):
    """The photo generator the docs point to has a command line: --help, and a tiny run in each layout."""
    script = str(ROOT / "benchmarks" / "photo_data.py")
    result = run_script(script, "--help", timeout=120)
    assert result.returncode == 0 and "--class-folders" in result.stdout, result.stderr[-2000:]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from photo_data import main
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    main([str(tmp_path / "folders"), "-n", "4", "--size", "48x64", "--class-folders"])
    assert "4 photos (48x64" in capsys.readouterr().out
    assert len(list((tmp_path / "folders").glob("*/*.jpg"))) == 4
    main([str(tmp_path / "kaggle"), "-n", "3", "--size", "48x64"])
    assert (tmp_path / "kaggle" / "styles.csv").read_text().count("\n") == 4
    assert len(list((tmp_path / "kaggle" / "images").glob("*.jpg"))) == 3
