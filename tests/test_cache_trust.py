"""A data cache can be trusted: reading one never runs code (its index.json is checked against
what this project writes), a damaged one is named (SHA-256 of every chunk and index file in
cache.json, verified before use, and a remote chunk when downloaded), it is never stale (the
data fingerprint hashes every byte of every file), and its key holds only what decides the
stored bytes (not the normalisation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_images import noisy, save_image, write_tree
from test_data_cache import image_table, keys

from fashionlab.data.cache.build import RECORD, CacheSettings, cache_key
from fashionlab.data.preprocess import Preprocessing
from fashionlab.errors import DataChangedError, FashionlabError


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder (`images`) and its complete cache (`cache`), built once for the module."""
    base = tmp_path_factory.mktemp("cache-trust")
    write_tree(base / "images", {"a": 10, "b": 10, "c": 9}, ext=".jpg")
    image_table(base / "images", base / "cache").setup()
    return base


@pytest.fixture
def built(template: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """(data folder, cache folder, key) of a complete cache: this test's own copy."""
    import shutil

    folder = shutil.copytree(template / "images", tmp_path / "images")
    cache = shutil.copytree(template / "cache", tmp_path / "cache")
    (key,) = keys(cache)
    return folder, cache, key


def record_of(cache: Path, key: str) -> dict:
    return json.loads((cache / key / RECORD).read_text())


def one_line_error(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ---- 1. reading a cache never runs code ------------------------------------------------------

class Payload:
    """Unpickling this creates the folder `marker`: code run by reading the cache."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def write_pickle_split(split_dir: Path, marker: Path, count: int) -> None:
    """A litdata split whose items' images are pickled objects that run code when read."""
    import shutil

    from litdata.streaming.writer import BinaryWriter

    shutil.rmtree(split_dir)
    writer = BinaryWriter(str(split_dir), chunk_bytes="64MB")
    for i in range(count):
        writer[i] = {"index": i, "image": Payload(marker), "targets": {"label": 0}}
    writer.done()
    writer.merge()


def forge_record(cache: Path, key: str) -> None:
    """Make cache.json agree with whatever the folder now holds (an attacker controls both)."""
    import hashlib

    record = record_of(cache, key)
    files = {}
    for path in sorted((cache / key).rglob("*")):
        if path.is_file() and path.name != RECORD:
            files[path.relative_to(cache / key).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    record["files"] = files
    (cache / key / RECORD).write_text(json.dumps(record))


def test_an_index_naming_pickle_is_refused_before_anything_is_read(built, tmp_path):
    folder, cache, key = built
    marker = tmp_path / "code-ran"
    write_pickle_split(cache / key / "val", marker, 5)
    assert "pickle" in (cache / key / "val" / "index.json").read_text()
    forge_record(cache, key)
    dm = image_table(folder, cache)
    with pytest.raises(FashionlabError) as err:
        dm.setup()
        list(dm.val_dataloader())
    message = one_line_error(err)
    assert str(cache / key / "val" / "index.json") in message and "pickle" in message
    assert not marker.exists(), "reading the cache ran code"


def test_the_split_reader_refuses_a_pickle_index_itself(built, tmp_path):
    """The check also sits where a split is opened (CachedSplit), not only in the run's
    verification of the whole cache."""
    from fashionlab.data.cache.streaming import CachedSplit

    _, cache, key = built
    marker = tmp_path / "code-ran"
    write_pickle_split(cache / key / "test", marker, 5)
    with pytest.raises(FashionlabError, match="pickle") as err:
        split = CachedSplit(str(cache / key / "test"), None, "raw", shuffle=False, seed=0)
        list(split)
    assert "index.json" in one_line_error(err)
    assert not marker.exists()


def test_evaluate_never_follows_a_cache_location_from_a_checkpoint():
    """evaluate.py's data config: the checkpoint's data.cache.dir (and storage options) are
    dropped unless the user passes data.cache.dir; the stored-bytes settings are kept."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from fashionlab.evaluation.run import data_config

    stored = OmegaConf.create({"data": {
        "_target_": "fashionlab.data.readers.image_folder.ImageFolderDataModule", "root": "/data",
        "tasks": {}, "cache": {"dir": "s3://someone-elses-bucket/cache", "format": "jpeg", "quality": 90,
                               "storage_options": {"endpoint_url": "http://attacker.example"}}}})
    loaded = SimpleNamespace(cfg=stored, tasks=[])
    plain = data_config(loaded, {"root": None, "cache": {"dir": None}})
    assert plain.cache.dir is None and not plain.cache.get("storage_options")
    assert plain.cache.format == "jpeg" and plain.cache.quality == 90
    own = data_config(loaded, {"cache": {"dir": "/mine/cache"}})
    assert own.cache.dir == "/mine/cache" and not own.cache.get("storage_options")
    assert own.cache.format == "jpeg"
    assert stored.data.cache.dir == "s3://someone-elses-bucket/cache", "the checkpoint's config is not edited"


# ---- 2. integrity ---------------------------------------------------------------------------

def test_the_record_holds_a_sha256_of_every_chunk_and_index(built):
    import hashlib

    _, cache, key = built
    files = record_of(cache, key)["files"]
    on_disk = {p.relative_to(cache / key).as_posix(): p for p in (cache / key).rglob("*")
               if p.is_file() and p.name != RECORD}
    assert set(files) == set(on_disk) and {"train/index.json", "val/index.json"} <= set(files)
    assert all(files[name] == hashlib.sha256(path.read_bytes()).hexdigest() for name, path in on_disk.items())


def damage_flip_label(cache: Path, key: str) -> Path:
    chunk = sorted((cache / key / "val").glob("chunk-*.bin"))[0]
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01  # the last item's label (its last field)
    chunk.write_bytes(bytes(data))
    return chunk


def damage_truncate(cache: Path, key: str) -> Path:
    chunk = sorted((cache / key / "train").glob("chunk-*.bin"))[-1]
    chunk.write_bytes(chunk.read_bytes()[:-100])
    return chunk


def damage_counts(cache: Path, key: str) -> Path:
    record = record_of(cache, key)
    record["counts"]["val"] -= 1
    (cache / key / RECORD).write_text(json.dumps(record))
    return cache / key / RECORD


@pytest.mark.parametrize("damage", [damage_flip_label, damage_truncate, damage_counts])
def test_a_damaged_cache_is_named_not_trained_on(built, damage):
    folder, cache, key = built
    damaged = damage(cache, key)
    dm = image_table(folder, cache)
    with pytest.raises(FashionlabError) as err:
        dm.setup()
        list(dm.val_dataloader())
        list(dm.train_dataloader())
    message = one_line_error(err)
    assert str(damaged) in message
    assert f"delete {cache / key}" in message, "names the way out"


def test_a_downloaded_chunk_is_verified_before_litdata_reads_it(built, tmp_path):
    """A remote split (litdata's `local:` scheme: chunks copied into a local cache like a
    download) with a flipped byte: the chunk is refused when downloaded, naming it."""
    from fashionlab.data.cache.streaming import CachedSplit

    _, cache, key = built
    files = {name.split("/", 1)[1]: digest for name, digest in record_of(cache, key)["files"].items()
             if name.startswith("val/")}
    remote = f"local:{cache / key / 'val'}"
    good = CachedSplit(remote, None, "raw", shuffle=False, seed=0, cache_dir=str(tmp_path / "dl1"),
                       files=files)
    assert sorted(int(item["index"]) for item in good) == list(range(5))
    chunk = damage_flip_label(cache, key)
    bad = CachedSplit(remote, None, "raw", shuffle=False, seed=0, cache_dir=str(tmp_path / "dl2"),
                      files=files)
    with pytest.raises(FashionlabError) as err:
        list(bad)
    message = one_line_error(err)
    assert chunk.name in message and "SHA-256" in message


def test_an_error_from_a_loader_worker_is_one_line():
    from fashionlab.entrypoint import error_message
    from fashionlab.errors import CacheError

    raised = CacheError("Caught CacheError in DataLoader worker process 1.\nOriginal Traceback (most recent "
                        "call last):\n  File \"x.py\", line 1, in f\n    g()\nfashionlab.errors.CacheError: "
                        "s3://b/k/train/chunk-0-0.bin: its SHA-256 differs; delete s3://b/k to rebuild it")
    assert error_message(raised) == ("s3://b/k/train/chunk-0-0.bin: its SHA-256 differs; "
                                     "delete s3://b/k to rebuild it")


# ---- 3. never stale -------------------------------------------------------------------------

def write_bmp_folder(root: Path) -> list[Path]:
    """BMPs of 64x64 (12 KiB of pixels): middle bytes lie outside the first and last 4 KiB."""
    paths = []
    for cls in ("a", "b", "c"):
        for i in range(10):
            paths.append(save_image(root / cls / f"img{i:03d}.bmp",
                                    noisy((60 + 60 * "abc".index(cls), 90, 120), i, (64, 64))))
    return paths


def change_middle_keep_times(path: Path) -> None:
    """Rewrite bytes in the middle of `path` (same size), then restore its atime and mtime
    (what `touch -r` does)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 600] = bytes(255 - b for b in data[middle:middle + 600])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def clock_moved_past(path: Path, probe: Path) -> None:
    """Wait until the file system's clock has moved past `path`'s ctime (it may tick coarsely),
    so that a change now shows in the ctime, as it does for any change made after hashing."""
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            return


@pytest.mark.parametrize("check, cached", [("header", True), ("exists", False)])
def test_a_changed_file_with_its_times_restored_is_seen(tmp_path, check, cached):
    """The run that would reuse the cache builds another; evaluate.py's check refuses the data.
    (data.check_images=exists once looked at the size alone: fingerprint only, no cache.)"""
    from fashionlab.evaluation.data_check import check_data_identity

    root, cache = tmp_path / "images", tmp_path / "cache"
    paths = write_bmp_folder(root)
    extra = (f"data.check_images={check}", *(() if cached else ("data.cache.dir=null",)))
    first = image_table(root, cache, *extra)
    first.setup()
    identity = first.data_identity()
    again = image_table(root, cache, *extra)
    again.setup()
    assert again.fingerprint() == first.fingerprint()

    clock_moved_past(paths[len(paths) // 2], tmp_path / "probe")
    change_middle_keep_times(paths[len(paths) // 2])
    changed = image_table(root, cache, *extra)
    changed.setup()
    assert changed.fingerprint() != first.fingerprint()
    if cached:
        assert len(keys(cache)) == 2, "the old cache is not reused"
    with pytest.raises(DataChangedError):  # evaluate.py's same-data check
        check_data_identity(identity, changed.data_identity(), "best.ckpt")


def test_a_checkpoint_written_before_is_checked_with_its_own_fingerprint(tmp_path):
    """An identity stored without `fingerprint_kind` (the quick fingerprint: size, first and last
    4 KiB) is compared with this data's quick fingerprint, so old checkpoints still evaluate."""
    from fashionlab.evaluation.data_check import check_data_identity

    root = tmp_path / "images"
    write_bmp_folder(root)
    dm = image_table(root, tmp_path / "cache", "data.cache.dir=null")
    now = dm.data_identity()
    old = {k: v for k, v in now.items() if k != "fingerprint_kind"}
    old["fingerprint"] = dm.legacy_fingerprint()
    assert old["fingerprint"] != now["fingerprint"]
    assert check_data_identity(old, dm.matches_recorded(old), "old.ckpt")["data_changed"] is False
    assert dm.matches_recorded(now) == now


def test_unchanged_files_are_not_hashed_again(tmp_path):
    """A file whose stat (size, mtime_ns, ctime_ns, inode) is as recorded, long enough ago that
    a change within the clock's granularity is ruled out, is not read again."""
    from fashionlab.data import file_hashes

    root = tmp_path / "images"
    paths = write_bmp_folder(root)
    store = tmp_path / "store"
    hashes, read = file_hashes.content_hashes([str(p) for p in paths], root, store, settle_ns=0)
    assert read == len(paths) and len(set(hashes)) == len(paths)
    again, read = file_hashes.content_hashes([str(p) for p in paths], root, store, settle_ns=0)
    assert (again, read) == (hashes, 0)
    clock_moved_past(paths[3], tmp_path / "probe")
    change_middle_keep_times(paths[3])
    changed, read = file_hashes.content_hashes([str(p) for p in paths], root, store, settle_ns=0)
    assert read == 1 and changed[3] != hashes[3] and changed[:3] == hashes[:3]


# ---- 8. the key: what decides the stored bytes only -----------------------------------------

def test_the_key_ignores_normalisation_but_not_the_stored_side():
    settings = CacheSettings(dir="/cache")
    base = Preprocessing(input_size=224, decode="reduced")
    other_norm = Preprocessing(input_size=224, decode="reduced", mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    key = cache_key("f" * 64, base, settings, 336)[0]
    assert cache_key("f" * 64, other_norm, settings, 336)[0] == key
    assert cache_key("f" * 64, base, settings, 384)[0] != key
    assert cache_key("f" * 64, base, CacheSettings(dir="/cache", format="jpeg"), 336)[0] != key
    assert cache_key("e" * 64, base, settings, 336)[0] != key
    full = Preprocessing(input_size=224, decode="full")
    assert cache_key("f" * 64, full, settings, 336)[0] != key, "full and reduced decoding store other pixels"
