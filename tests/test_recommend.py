"""`fashionlab` commands end to end on a tiny trained checkpoint and its evaluation directory,
and the Streamlit demo in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tomllib
from fixtures_browser import running_app, wait_for
from fixtures_recommend import (
    STYLES,
    make_eval_dir,
    train_fashion_model,
    train_style_model,
    write_celeba_faces,
    write_faces,
    write_photos,
)
from omegaconf import OmegaConf
from PIL import Image

from fashionlab.cli import main
from fashionlab.recommend.catalogue_io import open_index
from fashionlab.recommend.outfit import kmeans
from fashionlab.recommend.profile import build_profile
from fashionlab.recommend.webapp import (
    UploadError,
    common_folder,
    public_text,
    read_upload,
    relative_paths,
)
from fashionlab.retrieval.catalogue import Catalogue

from conftest import ROOT, run_script

# Its module-scoped trained fixture is built once: its tests stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_recommend")

ARTIFACTS = ROOT / "test-artifacts"
PARENT_OF = OmegaConf.load(ROOT / "conf" / "data" / "fashion_mnist.yaml").tasks.article.parent_of


@pytest.fixture(scope="session")
def rec(fmnist_dir, tmp_path_factory) -> SimpleNamespace:
    """One tiny trained checkpoint, its evaluation directory, photos exported from the catalogue
    (PNG, JPEG, RGBA, grayscale, in a subfolder, plus an unreadable file), and a style model."""
    root = tmp_path_factory.mktemp("recommend")
    ckpt = train_fashion_model(fmnist_dir, root / "run")
    eval_dir = make_eval_dir(ckpt, root / "eval")
    catalogue = Catalogue.load(eval_dir)
    ids = list(range(0, 40, 3))
    names = {}
    for n, item in enumerate(ids):
        name = ["{:03d}.png", "{:03d}.jpg", "sub/{:03d}_rgba.png", "sub/{:03d}_gray.png"][n % 4].format(item)
        names[name] = item
    photos = root / "photos"
    paths = write_photos({name: catalogue.image(item) for name, item in names.items()}, photos)
    (photos / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    style_ckpt = train_style_model(write_celeba_faces(root / "celeba"), root / "style")
    return SimpleNamespace(
        ckpt=ckpt,
        eval_dir=eval_dir,
        catalogue=catalogue,
        photos=photos,
        ids={str(paths[name]): item for name, item in names.items()},
        style_ckpt=style_ckpt,
        faces=write_faces(root / "faces"),
    )


def plain_pngs(rec) -> list[str]:
    """Photos saved as plain RGB PNG: the catalogue item's exact pixels."""
    return sorted(p for p in rec.ids if re.search(r"/\d{3}\.png$", p))


def cli(*args, capsys) -> tuple[int, str, str]:
    code = main(
        [str(a) for a in args] + ["--quiet"]
        if args[0] in {"predict", "wardrobe", "outfit"}
        else [str(a) for a in args]
    )
    out, err = capsys.readouterr()
    return code, out, err


def result_ids(out: str) -> list[int]:
    """ids of the printed result table (rows start with rank and id)."""
    return [int(m.group(2)) for m in re.finditer(r"^\s*(\d+)\s+(\d+)\s+\S", out, flags=re.M)]


@pytest.mark.slow
def test_predict_writes_csv_json_and_txt(rec, tmp_path, capsys):
    gallery = rec.catalogue.gallery
    code, out, err = cli("predict", rec.photos, "--ckpt", rec.ckpt, "-o", tmp_path / "p.csv", capsys=capsys)
    assert code == 0, err
    n = len(rec.ids) + 1
    assert f"{n} files, {n - 1} predicted, 1 unreadable" in out
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == n
    broken = table[table["path"].str.endswith("broken.jpg")]
    assert len(broken) == 1 and "broken.jpg" in broken["error"].iloc[0]
    assert "broken.jpg" in err
    lossless = table[table["path"].isin(plain_pngs(rec))]
    assert len(lossless) == len(plain_pngs(rec)) >= 3
    for row in lossless.to_dict("records"):
        item = gallery.iloc[rec.ids[row["path"]]]
        # the same pixels as the catalogue item give the catalogue's prediction (top-level tasks)
        for task in ("category", "colour", "pattern"):
            assert row[task] == item[f"pred_{task}"], task
        # the article is chosen among the children of the predicted category
        assert PARENT_OF[row["article"]] == row["category"]
        assert row["full_label"] == f"{row['category']}-{row['article']}"
        assert 0 < row["article_prob"] <= 1

    assert cli("predict", rec.photos, "--ckpt", rec.ckpt, "-o", tmp_path / "p.json", capsys=capsys)[0] == 0
    records = json.loads((tmp_path / "p.json").read_text())
    good = [r for r in records if r["error"] is None]
    assert len(records) == n and len(good) == n - 1
    for record in good:
        for task, entry in record["tasks"].items():
            assert sum(entry["probs"].values()) == pytest.approx(1, abs=1e-3)
            assert entry["probs"][entry["label"]] == pytest.approx(entry["prob"], abs=1e-4), task

    assert cli("predict", rec.photos, "--ckpt", rec.ckpt, "-o", tmp_path / "p.txt", capsys=capsys)[0] == 0
    lines = (tmp_path / "p.txt").read_text().splitlines()
    assert len(lines) == n and sum("\tERROR\t" in line for line in lines) == 1


@pytest.mark.slow
def test_similar_ranks_the_query_item_first(rec, tmp_path, capsys):
    query = plain_pngs(rec)[1]
    code, out, err = cli(
        "similar", "--index", rec.eval_dir, query, "-k", 4, "-o", tmp_path / "grid.png", capsys=capsys
    )
    assert code == 0, err
    ids = result_ids(out)
    assert len(ids) == 4 and ids[0] == rec.ids[query]
    assert re.search(rf"^\s*1\s+{ids[0]}\s+\S+\s+1\.0000?\b", out, flags=re.M)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width >= 3 * 112  # query + 4 results, about square

    code, out, _ = cli("similar", "--index", rec.eval_dir, query, "-k", 5, "--same-category", capsys=capsys)
    category = rec.catalogue.gallery.iloc[rec.ids[query]]["pred_category"]
    assert code == 0
    assert all(rec.catalogue.gallery.iloc[i]["pred_category"] == category for i in result_ids(out))


@pytest.mark.slow
def test_similar_random_query_is_left_out(rec, capsys):
    code, out, err = cli("similar", "--index", rec.eval_dir, "--random", "--seed", 3, "-k", 6, capsys=capsys)
    assert code == 0, err
    query = int(re.search(r"catalogue id (\d+)", out).group(1))
    ids = result_ids(out)
    assert len(ids) == 6 and query not in ids


@pytest.mark.slow
def test_profile_combines_attributes_and_embedding(rec, tmp_path, capsys):
    gallery = rec.catalogue.gallery
    pngs = plain_pngs(rec)
    category = gallery.iloc[rec.ids[pngs[0]]]["pred_category"]
    liked = [p for p in pngs if gallery.iloc[rec.ids[p]]["pred_category"] == category][:3]
    _, predictor = open_index(rec.eval_dir)
    profile = build_profile(predictor, [np.asarray(Image.open(p).convert("RGB")) for p in liked])
    for task in predictor.tasks:
        assert profile.distributions[task.name].sum() == pytest.approx(1, abs=1e-4)
    assert profile.preferred(predictor.task("category")) == {category}

    code, out, err = cli(
        "profile",
        "--index",
        rec.eval_dir,
        *liked,
        "-k",
        8,
        "--json",
        tmp_path / "p.json",
        "-o",
        tmp_path / "grid.png",
        capsys=capsys,
    )
    assert code == 0, err
    assert "fashion vector" in out and (tmp_path / "grid.png").is_file()
    result = json.loads((tmp_path / "p.json").read_text())
    rows = result["results"]
    assert len(rows) == 8
    for row in rows:
        assert row["score"] == pytest.approx(
            0.5 * row["attribute_score"] + 0.5 * row["embedding_score"], abs=2e-4
        )
    assert f"category={category}" in rows[0]["matched"]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)

    cli(
        "profile",
        "--index",
        rec.eval_dir,
        *liked,
        "-k",
        8,
        "--weights",
        0,
        1,
        "--json",
        tmp_path / "e.json",
        capsys=capsys,
    )
    embedding_only = json.loads((tmp_path / "e.json").read_text())["results"]
    scores = [r["embedding_score"] for r in embedding_only]
    assert scores == sorted(scores, reverse=True)
    assert [r["score"] for r in embedding_only] == pytest.approx(scores, abs=2e-4)


@pytest.mark.slow
def test_wardrobe_counts_categories(rec, tmp_path, capsys):
    code, out, err = cli(
        "wardrobe", rec.photos, "--ckpt", rec.ckpt, "--top", 2, "-o", tmp_path / "w.png", capsys=capsys
    )
    assert code == 0, err
    assert f"{len(rec.ids)} garments" in out and "unreadable:" in out
    main(["predict", str(rec.photos), "--ckpt", str(rec.ckpt), "-o", str(tmp_path / "p.csv"), "--quiet"])
    expected = pd.read_csv(tmp_path / "p.csv")["category"].value_counts()
    printed = dict(re.findall(r"^\s*(\w+)\s+(\d+)\s+[\d.]+\s*$", out, flags=re.M))
    assert len(printed) == min(2, len(expected))
    for category, count in printed.items():
        assert expected[category] == int(count)
        assert (tmp_path / f"w_{category}.png").is_file()
    assert min(map(int, printed.values())) >= sorted(expected.values, reverse=True)[len(printed) - 1]


@pytest.mark.slow
def test_outfit_face_to_style_to_items(rec, tmp_path, capsys):
    faces = rec.faces[0].parent
    (faces / "unreadable.png").write_text("no image")
    code, out, err = cli(
        "outfit",
        "--style-ckpt",
        rec.style_ckpt,
        "--index",
        rec.eval_dir,
        faces,
        "--items",
        4,
        "-o",
        tmp_path / "out.txt",
        capsys=capsys,
    )
    assert code == 0, err
    assert "catalogue clusters" in out
    lines = [line.split("\t") for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert len(lines) == len(rec.faces) + 1
    by_style: dict[str, set[tuple[int, ...]]] = {}
    for file, style, items in lines:
        if file.endswith("unreadable.png"):
            assert style == "ERROR"
            continue
        assert style in STYLES
        ids = tuple(int(i) for i in items.split(","))
        assert len(ids) == 4 and all(0 <= i < len(rec.catalogue.gallery) for i in ids)
        by_style.setdefault(style, set()).add(ids)
    # one cluster per style: faces of a style share items, different styles share none
    assert all(len(v) == 1 for v in by_style.values())
    chosen = [set(next(iter(v))) for v in by_style.values()]
    assert all(not (a & b) for i, a in enumerate(chosen) for b in chosen[i + 1 :])
    # the generated faces carry their style: most are recognised
    correct = sum(style == Path(file).name.split("_")[0] for file, style, _ in lines)
    assert correct >= len(rec.faces) // 2


def test_kmeans_separates_obvious_groups():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    x = np.concatenate([c + rng.normal(0, 0.05, (10, 8)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assignment, _ = kmeans(x, 3, seed=1)
    assert sorted(len(set(assignment[i * 10 : (i + 1) * 10])) for i in range(3)) == [1, 1, 1]
    assert len(set(assignment)) == 3


@pytest.mark.parametrize(
    "case",
    [
        "empty folder",
        "manifest mismatch",
        "unknown task",
        "k too large",
        "unknown setting value",
        "not an index",
    ],
)
@pytest.mark.slow
def test_errors_are_one_clear_line(rec, tmp_path, capsys, case):
    (tmp_path / "empty").mkdir()
    args, expected = {
        "empty folder": (["predict", tmp_path / "empty", "--ckpt", rec.ckpt], "is empty"),
        "manifest mismatch": (
            ["similar", "--index", rec.eval_dir, "--ckpt", rec.style_ckpt, next(iter(rec.ids))],
            rec.eval_dir.name,
        ),
        "unknown task": (
            [
                "similar",
                "--index",
                rec.eval_dir,
                "--random",
                "--same-category",
                "--category-task",
                "colour_x",
            ],
            "colour_x",
        ),
        "k too large": (["similar", "--index", rec.eval_dir, "--random", "-k", 10_000], "10000"),
        "unknown setting value": (
            ["profile", "--index", rec.eval_dir, next(iter(rec.ids)), "--set", "profile.weights.style=1"],
            "style",
        ),
        "not an index": (
            ["similar", "--index", tmp_path / "empty", "--random"],
            "not an evaluation directory",
        ),
    }[case]
    code, _, err = cli(*args, capsys=capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err, err


@pytest.mark.slow
def test_console_script_and_module_entry(rec):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fashionlab": "fashionlab.cli:main"}
    result = run_script("-m", "fashionlab", "--help", timeout=120)
    assert result.returncode == 0
    for command in ("predict", "similar", "profile", "wardrobe", "outfit", "app"):
        assert command in result.stdout
    # a real process: exit status 2 and exactly one line on stderr; a random query from the
    # catalogue needs no model, so no model is built and timm is never imported (`-X importtime`
    # lists every import on stderr)
    result = run_script("-X", "importtime", "-m", "fashionlab", "similar", "--index", str(rec.eval_dir),
                        "--random", "-k", "99999", timeout=120)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if not line.startswith("import time:")]
    assert result.returncode == 2 and len(errors) == 1 and "error: -k 99999" in errors[0], errors
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "fashionlab.retrieval.catalogue" in imported and "timm" not in imported


@pytest.mark.slow
def test_upload_validation(rec, tmp_path):
    png = plain_pngs(rec)[0]
    data = Path(png).read_bytes()
    assert read_upload("a.png", data, 2**20).shape[2] == 3
    with pytest.raises(UploadError, match=r"a\.png is .* KB; the limit is"):
        read_upload("a.png", data, len(data) - 1)
    with pytest.raises(UploadError, match=r"notes\.txt is not a readable image"):
        read_upload("notes.txt", b"hello, not an image", 2**20)


@pytest.mark.slow  # needs the shared trained run (tiny_run)
def test_index_may_be_a_run_folder(tiny_eval_dir, tmp_path, capsys):
    """`--index <run folder>`: the newest evaluation in its eval/, named in one line on stderr."""
    run = tmp_path / "run"
    older = shutil.copytree(tiny_eval_dir, run / "eval" / "2026-01-02_10-00-00", ignore=skip_wandb)
    newer = shutil.copytree(tiny_eval_dir, run / "eval" / "2026-01-01_09-00-00", ignore=skip_wandb)
    os.utime(older / "manifest.json", (1e9, 1e9))  # the manifest's time decides, not the name
    code, out, err = cli("similar", "--index", run, "--random", "--seed", 1, "-k", 3, capsys=capsys)
    assert code == 0, err
    assert err.strip() == f"index: {newer} (the newest of 2 evaluation(s) in {run / 'eval'})"
    assert len(result_ids(out)) == 3
    code, _, err = cli("similar", "--index", tmp_path / "empty_run", "--random", capsys=capsys)
    assert code == 2 and "not an evaluation directory" in err
    shutil.rmtree(run / "eval")
    (run / "eval").mkdir()
    code, _, err = cli("similar", "--index", run, "--random", capsys=capsys)
    assert code == 2 and f"holds no evaluation in {run / 'eval'}" in err and "evaluate.py" in err


def skip_wandb(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "wandb"]


def test_app_shows_paths_relative_to_the_catalogue_folder(tmp_path):
    photos = tmp_path / "photos"
    gallery = pd.Series([str(photos / "shirt" / "a.jpg"), str(photos / "bag" / "b.png"), "train[12]"])
    assert common_folder(gallery) == str(photos)
    assert relative_paths(gallery).tolist() == ["shirt/a.jpg", "bag/b.png", "train[12]"]
    # results from one class folder keep it: paths are relative to the whole catalogue's folder
    assert relative_paths(gallery[:1], common_folder(gallery)).tolist() == ["shirt/a.jpg"]
    assert relative_paths(pd.Series([str(tmp_path / "x.jpg")]), str(photos)).tolist() == ["x.jpg"]
    message = f"checkpoint {tmp_path}/run/best.ckpt named by {tmp_path}/eval/manifest.json does not exist"
    assert public_text(message, [tmp_path / "eval"]) == (
        f"checkpoint {tmp_path}/run/best.ckpt named by eval/manifest.json does not exist")


@pytest.mark.browser
def test_app_in_headless_chromium(rec, browser, tmp_path):
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    overrides = ["app.k=6", "app.max_upload_mb=0.01"]
    with running_app(rec.eval_dir, overrides, tmp_path / "streamlit.log") as (port, _):
        browser.get(f"http://127.0.0.1:{port}")
        upload = wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "input[type=file]"), 90, "the uploader"
        )
        # a demo page: no developer toolbar (Deploy button), the index by name, no local paths
        page = browser.find_element(By.TAG_NAME, "body").text
        assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=stAppDeployButton]")
        assert "Deploy" not in page
        assert f"catalogue: {rec.eval_dir.name}," in page and str(rec.eval_dir.parent) not in page
        query = plain_pngs(rec)[2]
        upload[0].send_keys(query)
        _, predictor = open_index(rec.eval_dir)
        expected = f"Predicted: {predictor.predict([np.asarray(Image.open(query))]).full_label(0)}"
        wait_for(lambda: expected in browser.find_element(By.TAG_NAME, "body").text, 90, expected)
        results = wait_for(
            lambda: (
                browser.find_elements(By.CSS_SELECTOR, ".st-key-results img")
                if len(browser.find_elements(By.CSS_SELECTOR, ".st-key-results img")) == 6
                else None
            ),
            60,
            "6 result images",
        )
        assert len(results) == 6
        loaded = "return [...arguments[0]].every(i => i.complete && i.naturalWidth > 0)"
        wait_for(lambda: browser.execute_script(loaded, results), 30, "the result images to load")
        assert str(rec.eval_dir.parent) not in browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(ARTIFACTS / "recommend_app.png"))

        # an oversized upload and a non-image get a message, not a traceback
        big = tmp_path / "big.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(big)
        text = tmp_path / "notes.png"
        text.write_text("not an image")
        upload = browser.find_elements(By.CSS_SELECTOR, "input[type=file]")[0]
        upload.send_keys(f"{big}\n{text}")
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        wait_for(
            lambda: "the limit is" in body() and "notes.png is not a readable image" in body(),
            60,
            "the upload messages",
        )
        assert "Traceback" not in body()
        browser.save_screenshot(str(ARTIFACTS / "recommend_app_errors.png"))
