"""The prepared cache (data.cache): its key, reuse and rebuild rules, atomic completion, bad files
found while building, the items read back, and the split of the items over ranks and workers."""

from __future__ import annotations

import gc
import json
import logging
import math
import socket
import weakref
from pathlib import Path

import numpy as np
import pytest
from fixtures_images import write_garbage, write_tree
from fixtures_runs import compose_config
from hydra.utils import instantiate

from fashionlab.data.cache.build import RECORD
from fashionlab.data.cache.streaming import assign_items
from fashionlab.errors import BadImageError


def image_table(root: Path, cache: Path, *extra: str):
    """An image-folder data module on `root` with the cache in `cache` (32 px, 2 workers)."""
    cfg = compose_config("train", ["data=image_folder", f"data.root={root}", f"data.cache.dir={cache}",
                                   "data.num_workers=2", "data.batch_size=4", "data.eval_batch_size=4",
                                   "data.image_size=32", "data.val_size=5", "data.test_size=5",
                                   "data.cache.workers=2", *extra])
    return instantiate(cfg.data, _recursive_=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_tree(root, {"a": 10, "b": 10, "c": 9}, ext=".jpg")  # 24x20 and 20x28 JPEGs
    return root


def keys(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if (p / RECORD).is_file())


def seen(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


@pytest.mark.parametrize("n, world, workers, batch", [
    (29, 2, 2, 4), (5, 2, 2, 8), (64, 3, 4, 4), (7, 4, 1, 2), (1, 2, 2, 4), (100, 8, 3, 7)])
def test_items_are_dealt_once_or_padded_to_equal_shares(n, world, workers, batch):
    """Chunks of uneven sizes; val/test: each item exactly once, ranks within one item of each
    other; train: equal ranks, every item, fewer than `world` repeats; batches = ceil(share/B)."""
    sizes = [3, 1, 5, 2] * 50
    chunks, start = [], 0
    while start < n:
        size = min(sizes[len(chunks)], n - start)
        chunks.append((len(chunks), (start, start, start + size, start + size)))
        start += size
    order = chunks[::-1]  # any epoch order
    for pad in (False, True):
        _, intervals = assign_items(order, world, workers, batch, pad)
        items = [[i for iv in w for i in range(iv[1], iv[2])] for w in intervals]
        ranks = [[i for w in items[r * workers:(r + 1) * workers] for i in w] for r in range(world)]
        flat = [i for rank in ranks for i in rank]
        assert set(flat) == set(range(n))
        batches = [sum(math.ceil(len(w) / batch) for w in items[r * workers:(r + 1) * workers])
                   for r in range(world)]
        if pad:
            share = math.ceil(n / world)
            share += batch > 1 and share > 1 and share % batch == 1  # no last batch of one
            assert {len(r) for r in ranks} == {share}
            assert len(flat) - n < 2 * world
            assert all(len(w) % batch != 1 for w in items) or share == 1
        else:
            assert sorted(flat) == list(range(n))
            assert max(map(len, ranks)) - min(map(len, ranks)) <= 1
        assert batches == [math.ceil(len(r) / batch) for r in ranks]


@pytest.mark.slow
def test_build_once_reuse_and_rebuild(folder, tmp_path, caplog, capsys):
    cache = tmp_path / "cache"
    dm = image_table(folder, cache)
    dm.setup()
    assert "lightning.ai" not in capsys.readouterr().out  # litdata's advertisement, once per split
    (key,) = keys(cache)
    record = json.loads((cache / key / RECORD).read_text())
    assert record["counts"] == {"train": 19, "val": 5, "test": 5}
    assert record["short_side"] == 48 and record["data_fingerprint"] == dm.fingerprint()
    assert dm.data_stats()["data_cache_key"] == key

    # the items read back: every val item once, stored with the short side 48 (never enlarged:
    # these images are smaller), eval-transformed to 32 px, with the table's labels
    batches = list(dm.val_dataloader())
    assert sorted(seen(batches)) == list(range(5))
    assert batches[0]["image"].shape[1:] == (3, 32, 32)
    for batch in batches:
        for i, label in zip(batch["index"], batch["targets"]["label"], strict=True):
            assert int(label) == int(dm.splits["val"].targets["label"][int(i)])
    raw = image_table(folder, cache).cached_loader("test", None, train=False, batch_size=1,
                                                   persistent=False)
    raw.dataset.image_transform = None
    shapes = {tuple(item["image"].shape) for item in raw.dataset}
    assert shapes <= {(24, 20, 3), (20, 28, 3)}

    # the same data and preprocessing: reused, not rebuilt
    mtime = (cache / key / RECORD).stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="fashionlab.data.cache.prepare"):
        again = image_table(folder, cache)
        again.setup()
    assert "reusing" in caplog.text and (cache / key / RECORD).stat().st_mtime_ns == mtime
    # another preprocessing, another dataset: new caches beside it
    image_table(folder, cache, "data.image_size=40").setup()
    assert len(keys(cache)) == 2
    write_tree(folder, {"c": 10}, ext=".jpg", seed=7)  # rewrites c's files, adds one
    image_table(folder, cache).setup()
    assert len(keys(cache)) == 3


def test_incomplete_caches_are_never_read(folder, tmp_path):
    cache = tmp_path / "cache"
    image_table(folder, cache).setup()
    (key,) = keys(cache)
    # a killed build: a partial sibling, and a final folder without its record
    (cache / f".{key}.partial-{socket.gethostname()}-{2**22 + 1}-abc123").mkdir()  # no such pid
    (cache / key / RECORD).unlink()
    (cache / key / "train" / "index.json").write_text("{broken")
    dm = image_table(folder, cache)
    dm.setup()
    assert keys(cache) == [key] and not list(cache.glob(".*partial*"))
    assert sorted(seen(dm.test_dataloader())) == list(range(5))


@pytest.mark.slow
def test_bad_files_found_while_building(folder, tmp_path):
    """check_images=exists lets a broken file through the table check; the build finds it."""
    write_garbage(folder / "b" / "broken.jpg")
    cache, report = tmp_path / "cache", tmp_path / "report"
    with pytest.raises(BadImageError, match=r"broken\.jpg.*building the data cache"):
        image_table(folder, cache, "data.check_images=exists").setup()
    assert not keys(cache) and not list(cache.glob(".*partial*"))

    dm = image_table(folder, cache, "data.check_images=exists", "data.on_bad_image=skip")
    dm.report_dir = str(report)
    dm.setup()
    (key,) = keys(cache)
    assert [b["path"] for b in json.loads((cache / key / RECORD).read_text())["bad_images"]] == \
        ["b/broken.jpg"]
    assert "b/broken.jpg" in (report / "skipped_images.csv").read_text()
    assert sum(len(ds) for ds in dm.splits.values()) == 29
    assert all("broken" not in p for ds in dm.splits.values() for p in ds.rel_paths)
    # positions in the splits without the bad file: each item of every split once
    for split in ("train", "val", "test"):
        loader = dm.inference_loader(split)
        assert sorted(seen(loader)) == list(range(len(dm.splits[split])))
    # a second run reads the same table back from the record
    again = image_table(folder, cache, "data.check_images=exists", "data.on_bad_image=skip")
    again.setup()
    assert again.fingerprint() == dm.fingerprint()


def test_train_epochs_are_shuffled_by_seed_and_epoch(folder, tmp_path):
    dm = image_table(folder, tmp_path / "cache")
    loader = dm.train_dataloader()
    first, second = seen(loader), seen(loader)
    assert sorted(first) == sorted(second) == list(range(19))
    assert first != second
    fresh = image_table(folder, tmp_path / "cache").train_dataloader()
    assert seen(fresh) == first
    assert np.unique(first).size == 19


def test_a_dropped_cached_loader_stops_its_workers_at_once(folder, tmp_path):
    """litdata's loader iterator refers back to its loader; in that cycle the garbage collector
    closed the workers' index queues before the iterator's shutdown could send them the stop, and
    every dropped loader with persistent workers waited 5 s per worker and then killed them. The
    cached loader is freed as soon as the last reference goes, and its workers end by themselves."""
    dm = image_table(folder, tmp_path / "cache")
    loader = dm.val_dataloader()
    assert loader.persistent_workers and sorted(seen(loader)) == list(range(5))
    iterator = weakref.ref(loader._iterator)
    workers = list(loader._iterator._workers)
    gc.disable()  # freed by reference counting, not by a later collection
    try:
        del loader
        assert iterator() is None
    finally:
        gc.enable()
    for worker in workers:  # stopped (ended, or killed after its shutdown's wait), never left behind
        worker.join(60)
    assert [w.is_alive() for w in workers] == [False, False]
