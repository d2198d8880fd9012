"""Reader hardening: an image listed twice, the usual validation folder names, repeated list-file
entries and concurrent downloads."""

import hashlib
import http.server
import threading
from pathlib import Path

import pandas as pd
import pytest
from fixtures_readers import write_celeba, write_deepfashion
from fixtures_tables import bmp_table, pixels_for, write_bmp

from fashionlab.data.readers.celeba_style import celeba_style_table
from fashionlab.data.readers.csv_table import CsvDataModule
from fashionlab.data.readers.deepfashion import deepfashion_table
from fashionlab.data.readers.download import download_file
from fashionlab.data.readers.image_folder import ImageFolderDataModule
from fashionlab.errors import DataFormatError

TRANSFORMS = {"train": {"_target_": "albumentations.Compose",
                        "transforms": [{"_target_": "albumentations.ToTensorV2"}]}}
TRANSFORMS["eval"] = TRANSFORMS["train"]
LABEL = {"label": {"kind": "multiclass", "classes": "auto"}}


def csv_module(root: Path, **kwargs) -> CsvDataModule:
    return CsvDataModule(root=str(root), tasks=LABEL, transforms=TRANSFORMS, image_size=12,
                         batch_size=4, **kwargs)


# --- an image listed twice in a CSV ----------------------------------------------------------------

@pytest.mark.parametrize("second_label", ["shirt", "bag"])
def test_csv_listing_an_image_twice_names_both_lines(tmp_path, second_label):
    table = bmp_table(tmp_path, {"shirt": 6, "bag": 6})
    rows = table[["path", "article"]].rename(columns={"article": "label"})
    rows = pd.concat([rows, pd.DataFrame([{"path": rows.at[1, "path"], "label": second_label}])])
    rows.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataFormatError, match=r"labels\.csv:14: image shirt_1\.bmp is listed twice "
                                              r"\(labels\.csv:3 and labels\.csv:14\)"):
        _ = csv_module(tmp_path).tasks


def test_the_same_file_under_two_spellings_is_a_duplicate(tmp_path):
    table = bmp_table(tmp_path, {"shirt": 6, "bag": 6})
    rows = table[["path", "article"]].rename(columns={"article": "label"})
    rows = pd.concat([rows, pd.DataFrame([{"path": f"./{rows.at[0, 'path']}", "label": "bag"}])])
    rows.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataFormatError, match=r"labels\.csv:14: image shirt_0\.bmp is listed twice"):
        _ = csv_module(tmp_path).tasks


# --- image_folder: the usual validation folder names ---------------------------------------------

def write_folder(root: Path, splits: dict[str, int]) -> None:
    for split, n in splits.items():
        for cls in ("bag", "shoe"):
            for i in range(n):
                write_bmp(root / split / cls / f"{i}.bmp", pixels_for(f"{split}/{cls}/{i}"))


def folder_module(root: Path) -> ImageFolderDataModule:
    return ImageFolderDataModule(root=str(root), tasks=LABEL, transforms=TRANSFORMS, image_size=12,
                                 batch_size=4, val_size=0.25, test_size=0.25)


@pytest.mark.parametrize("name", ["valid", "validation", "val"])
def test_image_folder_reads_the_usual_validation_folder_names(tmp_path, name):
    write_folder(tmp_path, {"train": 6, name: 3, "test": 2})
    dm = folder_module(tmp_path)
    dm.setup()
    assert len(dm.splits["val"]) == 6 and len(dm.splits["test"]) == 4
    assert len(dm.splits["train"]) == 12
    assert all(p.startswith(f"{name}/") for p in dm.splits["val"].rel_paths)


def test_image_folder_stops_on_an_unknown_folder_next_to_train(tmp_path):
    write_folder(tmp_path / "a", {"train": 4, "holdout": 2})
    (tmp_path / "a" / ".cache").mkdir()  # hidden folders are ignored
    with pytest.raises(DataFormatError, match=r"holdout.*next to train/"):
        _ = folder_module(tmp_path / "a").tasks
    write_folder(tmp_path / "b", {"train": 4, "val": 2, "valid": 2})
    with pytest.raises(DataFormatError, match=r"val/ and valid/ .*both"):
        _ = folder_module(tmp_path / "b").tasks


# --- repeated entries in the list files ----------------------------------------------------------

def repeat_line(path: Path, line_no: int, new_value: str | None = None) -> int:
    """Append a copy of line `line_no` (1-based; value replaced when given); returns its number."""
    lines = path.read_text().splitlines()
    copy = lines[line_no - 1]
    if new_value is not None:
        copy = copy.rsplit(None, 1)[0] + " " + new_value
    lines.append(copy)
    if lines[0].strip().isdigit():
        lines[0] = str(int(lines[0]) + 1)
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


@pytest.mark.parametrize(("rel", "value"), [
    ("Anno/list_category_img.txt", "7"),
    ("Anno/list_attr_img.txt", None),
    ("Eval/list_eval_partition.txt", "test"),
])
def test_deepfashion_repeated_image_names_both_lines(tmp_path, rel, value):
    write_deepfashion(tmp_path)
    last = repeat_line(tmp_path / rel, 4, value)
    name = Path(rel).name.replace(".", r"\.")
    with pytest.raises(DataFormatError, match=rf"{name}:{last}: image img/\S+ is listed twice "
                                              rf"\(lines 4 and {last}\)"):
        deepfashion_table(tmp_path, attribute_groups=["texture"])


@pytest.mark.parametrize(("rel", "value"), [("list_eval_partition.txt", "2"),
                                            ("list_attr_celeba.txt", None)])
def test_celeba_repeated_image_names_both_lines(tmp_path, rel, value):
    write_celeba(tmp_path, n=6)
    first = 3 if rel == "list_attr_celeba.txt" else 1
    last = repeat_line(tmp_path / rel, first, value)
    name = rel.replace(".", r"\.")
    with pytest.raises(DataFormatError, match=rf"{name}:{last}: image 000001\.jpg is listed twice "
                                              rf"\(lines {first} and {last}\)"):
        celeba_style_table(tmp_path, {"formal": {"any_of": ["Wearing_Necktie"]}})


# --- two downloads of the same file at once ------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server(http.server.ThreadingHTTPServer):
    """Serves PAYLOAD; the first response stops half way until a second request arrives (or 2 s
    pass), so that a download that does not wait for the first one overlaps with it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = 0
        self.first_arrived = threading.Event()
        self.second_arrived = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.requests += 1
        first = server.requests == 1
        (server.first_arrived if first else server.second_arrived).set()
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        half = len(PAYLOAD) // 2
        self.wfile.write(PAYLOAD[:half])
        self.wfile.flush()
        if first:
            server.second_arrived.wait(timeout=2)
        self.wfile.write(PAYLOAD[half:])

    def log_message(self, *args) -> None:
        pass


def test_two_concurrent_downloads_share_one_file_safely(tmp_path):
    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}/"
    md5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()
    results: dict[int, object] = {}

    def fetch(i: int) -> None:
        try:
            results[i] = download_file("data.bin", [mirror], tmp_path, md5, timeout=10)
        except Exception as exc:
            results[i] = exc

    try:
        first = threading.Thread(target=fetch, args=(0,))
        first.start()
        assert server.first_arrived.wait(timeout=10)
        second = threading.Thread(target=fetch, args=(1,))
        second.start()
        first.join(timeout=30)
        second.join(timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert results == {0: tmp_path / "data.bin", 1: tmp_path / "data.bin"}
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests == 1  # the second download found the first one's file
    assert not (tmp_path / "data.bin.part").exists()
