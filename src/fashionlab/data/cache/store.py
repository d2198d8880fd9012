"""The object-store side of the cache (`data.cache.dir=s3://...` or `gs://...`): every client that
touches the store built from the same options, and the one place that reaches into litdata.

- Options: `data.cache.storage_options` (boto3 client keywords for S3: endpoint_url,
  aws_access_key_id, aws_secret_access_key, region_name, ...) over the standard AWS variables,
  which boto3 reads itself (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  AWS_DEFAULT_REGION) and AWS_REGION, which it does not (added here as region_name). A masked
  value (`***`, read back from a checkpoint) counts as not given.
- http endpoints: litdata moves chunks through obstore, which refuses plain http unless told
  otherwise; `AllowHttp` (mixed into the s3:// downloader on import) allows it when the endpoint
  is http, for the build's uploads and the readers' downloads alike.
- Staging: each build stages its chunks in its own temporary folder (`private_staging`).
- The completion record: `put_if_absent` writes it in one conditional step (S3 `If-None-Match: *`,
  GCS generation 0), so a published record is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

from litdata.streaming.client import S3Client
from litdata.streaming.downloader import (
    _DOWNLOADERS,
    S3Downloader,
    _build_obstore_s3_store,
    _cached_obstore_store,
    register_downloader,
)

from fashionlab.environ import environ_set
from fashionlab.errors import ConfigError
from fashionlab.redaction import is_masked

SCHEMES = ("s3", "gs")


def scheme(url: str) -> str:
    """The object store of `url` (s3 or gs); anything else is refused naming `url`."""
    name = urlparse(url).scheme
    if name not in SCHEMES:
        raise ConfigError(f"data.cache.dir={url}: object stores are s3:// (AWS or any S3-compatible "
                          f"store) or gs://")
    return name


def _without_masked(options: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Mapping):
            value = _without_masked(value)
            if not value:
                continue
        if not is_masked(value):
            out[str(key)] = value
    return out


def client_options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options every client of `url` is built with (see the module docstring)."""
    options = _without_masked(storage_options or {})
    if urlparse(url).scheme == "s3" and "region_name" not in options \
            and os.environ.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        options["region_name"] = os.environ["AWS_REGION"]
    return options


def _http_capable_store(bucket: str, client: S3Client) -> Any:
    from obstore.store import S3Store

    store = _build_obstore_s3_store(bucket, client)
    if not str(store.config.get("endpoint", "")).startswith("http://"):
        return store
    config = {k: v for k, v in store.config.items() if k != "bucket"}
    return S3Store(bucket, config=config, credential_provider=store.credential_provider,
                   client_options={**(store.client_options or {}), "allow_http": True})


class AllowHttp:
    """Mixed into litdata's S3 downloader (also its uploader while optimizing): http endpoints
    allowed."""

    _client: S3Client

    def _get_store(self, bucket: str) -> Any:
        return _cached_obstore_store(self, lambda: _http_capable_store(bucket, self._client))


def _install() -> None:
    """Register, for s3://, the downloader registered now with AllowHttp mixed in (so that
    another wrapper of litdata's downloaders, before or after this one, keeps working)."""
    current = _DOWNLOADERS.get("s3://", S3Downloader)
    if issubclass(current, AllowHttp):
        return
    name = f"AllowHttp{current.__name__}"
    mixed = type(name, (AllowHttp, current), {"__module__": __name__, "__qualname__": name})
    globals()[name] = mixed  # picklable by name (spawned workers)
    register_downloader("s3://", mixed, overwrite=True)


_install()


@contextlib.contextmanager
def private_staging() -> Iterator[None]:
    """litdata.optimize stages chunks in one fixed folder per machine (<tmp>/chunks, <tmp>/data)
    and empties it when it starts, under a concurrent build's feet: give this build its own."""
    with tempfile.TemporaryDirectory(prefix="fashionlab-cache-staging-") as folder, environ_set({
            "DATA_OPTIMIZER_CACHE_FOLDER": os.path.join(folder, "chunks"),
            "DATA_OPTIMIZER_DATA_CACHE_FOLDER": os.path.join(folder, "data")}):
        yield


def _split(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3(url: str, storage_options: Mapping[str, Any] | None) -> Any:
    return S3Client(storage_options=client_options(url, storage_options)).client


def _gcs_bucket(url: str, storage_options: Mapping[str, Any] | None) -> Any:
    from google.cloud import storage

    bucket, _ = _split(url)
    return storage.Client(**client_options(url, storage_options)).bucket(bucket)


def read_bytes(url: str, storage_options: Mapping[str, Any] | None) -> bytes | None:
    """The object at `url`, or None when there is none."""
    bucket, key = _split(url)
    if scheme(url) == "gs":
        blob = _gcs_bucket(url, storage_options).blob(key)
        return blob.download_as_bytes() if blob.exists() else None
    client = _s3(url, storage_options)
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def put_if_absent(url: str, data: bytes, storage_options: Mapping[str, Any] | None) -> bool:
    """Write `data` at `url` unless an object is there already, in one step: True when written,
    False when another writer's object was there first (it is left as it is)."""
    bucket, key = _split(url)
    if scheme(url) == "gs":
        from google.api_core.exceptions import PreconditionFailed

        try:
            _gcs_bucket(url, storage_options).blob(key).upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            return False
        return True
    import botocore.exceptions

    try:
        _s3(url, storage_options).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def list_names(url: str, storage_options: Mapping[str, Any] | None) -> set[str]:
    """The names (relative to `url`, a folder) of every object under `url`."""
    bucket, key = _split(url)
    prefix = key.rstrip("/") + "/"
    if scheme(url) == "gs":
        blobs = _gcs_bucket(url, storage_options).list_blobs(prefix=prefix)
        return {blob.name[len(prefix):] for blob in blobs}
    pages = _s3(url, storage_options).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {obj["Key"][len(prefix):] for page in pages for obj in page.get("Contents", [])}


def delete_folder(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Delete every object under `url` (a folder)."""
    bucket, key = _split(url)
    prefix = key.rstrip("/") + "/"
    if scheme(url) == "gs":
        for blob in _gcs_bucket(url, storage_options).list_blobs(prefix=prefix):
            blob.delete()
        return
    client = _s3(url, storage_options)
    names = sorted(list_names(url, storage_options))
    for start in range(0, len(names), 1000):
        batch = [{"Key": prefix + name} for name in names[start:start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
