"""Fashion-MNIST: finding, downloading (checksum-verified) and splitting the official files."""

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from fashionlab.data.readers.fashion_mnist import FILES, locate_fashion_mnist, read_fashion_mnist_split
from fashionlab.errors import ConfigError, DataFormatError, DataNotFoundError

from conftest import SYSTEM_FMNIST, write_fashion_mnist

NAMES = [name for pair in FILES.values() for name in pair]


@pytest.fixture
def file_server(fmnist_dir):
    """The fixture files served over HTTP on 127.0.0.1, as a download mirror."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(fmnist_dir))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def md5_of(folder: Path) -> dict[str, str]:
    return {n: hashlib.md5((folder / n).read_bytes()).hexdigest() for n in NAMES}


def test_root_is_preferred_then_system_dirs(tmp_path, fmnist_dir):
    assert locate_fashion_mnist(fmnist_dir, [tmp_path], download=False) == fmnist_dir
    assert locate_fashion_mnist(tmp_path / "none", [fmnist_dir], download=False) == fmnist_dir


def test_missing_data_names_both_ways_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        locate_fashion_mnist(tmp_path / "fm", [tmp_path / "sys"], download=True,
                             mirrors=["http://127.0.0.1:9/"])
    message = str(info.value)
    assert str(tmp_path / "fm") in message and str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "data.root=" in message
    assert "127.0.0.1:9" in message


def test_download_verifies_md5(tmp_path, fmnist_dir, file_server):
    dest = tmp_path / "fm"
    folder = locate_fashion_mnist(dest, [], download=True, mirrors=[file_server],
                                  md5=md5_of(fmnist_dir))
    assert folder == dest
    assert md5_of(dest) == md5_of(fmnist_dir)


def test_download_with_wrong_md5_keeps_nothing(tmp_path, file_server):
    dest = tmp_path / "fm"
    wrong = dict.fromkeys(NAMES, "0" * 32)
    with pytest.raises(DataNotFoundError, match=r"does not match the expected 0{32}"):
        locate_fashion_mnist(dest, [], download=True, mirrors=[file_server], md5=wrong)
    assert not [p for p in dest.iterdir() if p.suffix != ".lock"]  # only the download lock


def test_label_count_mismatch_names_the_file(tmp_path):
    folder = write_fashion_mnist(tmp_path / "fm")
    from fashionlab.data.readers.idx import write_idx

    write_idx(folder / FILES["test"][1], np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte\.gz: 3 labels for 80"):
        read_fashion_mnist_split(folder, "test")


def test_datamodule_split_tasks_and_rgb(compose_cfg, fmnist_dir, tmp_path):
    from conftest import tiny_overrides

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path, backbone=None), "data.image_size=40"])
    dm = instantiate(cfg.data, _recursive_=False)
    dm.setup()
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes == {"train": 120, "val": 40, "test": 80}
    # stratified: the fixture has 16 train images per class, so 4 per class go to val
    assert np.bincount(dm.splits["val"].targets["article"]).tolist() == [4] * 10
    item = dm.splits["val"][0]
    assert item["image"].shape == (3, 40, 40) and item["image"].dtype == torch.float32
    assert torch.equal(item["image"][0], item["image"][1])
    assert torch.equal(item["image"][1], item["image"][2])
    # category is derived from article through parent_of
    article = dm.tasks[0]
    category = dm.tasks[1]
    a = dm.splits["test"].targets["article"]
    c = dm.splits["test"].targets["category"]
    for ai, ci in zip(a, c, strict=True):
        assert category.classes[ci] == article.parent_of[article.classes[ai]]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (16, 3, 40, 40)
    assert set(batch["targets"]) == {"article", "category"}


def test_split_depends_on_seed(compose_cfg, fmnist_dir, tmp_path):
    from conftest import tiny_overrides

    def val_indices(seed):
        cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path), f"seed={seed}"])
        dm = instantiate(cfg.data, _recursive_=False)
        dm.setup()
        return dm.splits["val"].images.copy(), dm.fingerprint()

    a, fa = val_indices(1)
    b, fb = val_indices(1)
    c, fc = val_indices(2)
    assert np.array_equal(a, b) and fa == fb
    assert not np.array_equal(a, c) and fa != fc


def test_wrong_class_list_is_refused(compose_cfg, fmnist_dir, tmp_path):
    from conftest import tiny_overrides

    cfg = compose_cfg([*tiny_overrides(fmnist_dir, tmp_path),
                       "data.tasks.article.classes=[a,b,c,d,e,f,g,h,i,j]",
                       "~data.tasks.article.parent", "~data.tasks.article.parent_of"])
    dm = instantiate(cfg.data, _recursive_=False)
    with pytest.raises(ConfigError, match=r"data\.tasks\.article\.classes must list the 10"):
        dm.setup()


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="needs apt package dataset-fashion-mnist")
def test_real_fashion_mnist_files():
    images, labels = read_fashion_mnist_split(SYSTEM_FMNIST, "train")
    test_images, test_labels = read_fashion_mnist_split(SYSTEM_FMNIST, "test")
    assert images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
