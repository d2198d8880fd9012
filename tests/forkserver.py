"""Script processes forked from a server that has already imported torch, Lightning and timm.

A new interpreter spends about 10 CPU-seconds importing torch, Lightning, torchmetrics, torchvision
and timm before a script reads its first argument. A test that needs a separate process (to
SIGKILL it, to run two at once, to be a DDP rank) but not a fresh interpreter starts it with
`popen`/`run` here: the process is forked from a server holding those imports and runs
`python ARGS...` as the interpreter would (sys.argv, sys.path[0], `__main__`, stdout/stderr,
exit status, a signal's negative status, interpreter shutdown with atexit handlers).

A process sees its own environment: the variables the preloaded modules read at import (thread
counts, PYTHONPATH, buffering; timm's and huggingface_hub's caches, offline switch and settings)
key the server, so a request that differs in them gets a server of its own. W&B, matplotlib and
the project read more of the environment at import and are never preloaded (timm's own import of
W&B is held off while the server preloads). Tests of what a fresh
interpreter does (import order, start-up errors) keep using a real `subprocess`.

Protocol (Unix socket, one connection per process): the client sends a length-prefixed JSON
request {args, env, cwd} with its stdin/stdout/stderr file descriptors; the server forks a
supervisor that forks the script process, answers {"pid"}, waits for it and answers
{"returncode", "cpu_seconds"}.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PRELOAD = ("numpy", "torch", "torchvision", "torchmetrics", "lightning", "lightning.pytorch",
           "scipy.signal", "scipy.stats", "pandas", "timm")
# Read at import (OpenMP/BLAS thread pools, sys.path, stdio buffering; huggingface_hub's constants,
# timm's layer switches, the home folder behind the default caches): part of a server's identity.
KEY_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONPATH",
            "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONWARNINGS", "HOME", "XDG_CACHE_HOME",
            "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK", "DISABLE_TELEMETRY")
KEY_PREFIXES = ("HF_", "HUGGINGFACE_", "TIMM_")
HERE = Path(__file__).resolve()


def _send(conn: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(conn, [payload], list(fds))
    else:
        conn.sendall(payload)


def _recv(conn: socket.socket, maxfds: int = 0) -> tuple[dict | None, list[int]]:
    chunk, fds, _, _ = socket.recv_fds(conn, 1 << 16, maxfds)
    if not chunk:
        return None, fds
    while len(chunk) < 4:
        chunk += conn.recv(1 << 16)
    (size,) = struct.unpack("!I", chunk[:4])
    data = chunk[4:]
    while len(data) < size:
        more = conn.recv(1 << 16)
        if not more:
            return None, fds
        data += more
    return json.loads(data[:size]), fds


# --- server side ---------------------------------------------------------------------------------

def _serve(path: str) -> tuple[dict, list[int]] | None:
    """Accept requests until stdin closes; returns (request, fds) in a forked script process."""
    import importlib

    # timm imports wandb when it can (timm.utils.summary), and W&B reads the environment and makes
    # its media folder at import: kept out of the preload, a script imports it for itself
    sys.modules["wandb"] = None
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        del sys.modules["wandb"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            return None
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        request, fds = _recv(conn, maxfds=3)
        if request is None or len(fds) != 3:
            conn.close()
            for fd in fds:
                os.close(fd)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return _supervise(conn, request, fds)
        conn.close()
        for fd in fds:
            os.close(fd)


def _supervise(conn: socket.socket, request: dict, fds: list[int]) -> tuple[dict, list[int]]:
    """Fork the script process, report its pid and, once it ends, its status."""
    pid = os.fork()
    if pid == 0:
        conn.close()
        return request, fds
    for fd in fds:
        os.close(fd)
    try:
        _send(conn, {"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _send(conn, {"returncode": os.waitstatus_to_exitcode(status),
                     "cpu_seconds": usage.ru_utime + usage.ru_stime})
    finally:
        os._exit(0)


def _become_script(request: dict, fds: list[int]) -> None:
    """Turn this forked process into `python ARGS...` and run it (returns only by exiting)."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    args = request["args"]
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        sys.path[0] = str(Path(args[0]).resolve().parent)
        runpy.run_path(args[0], run_name="__main__")


# --- client side ---------------------------------------------------------------------------------

class ForkedProcess:
    """The part of `subprocess.Popen`'s interface the tests use, for a process from a server."""

    def __init__(self, server: _Server, args: list[str], env: dict[str, str], cwd: Path,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text: bool = True) -> None:
        self.args, self.returncode = args, None
        self.stdout = self.stderr = None
        devnull = os.open(os.devnull, os.O_RDWR)
        ends, mine = [devnull], [devnull]
        for name, where in (("stdout", stdout), ("stderr", stderr)):
            if where == subprocess.PIPE:
                read, write = os.pipe()
                setattr(self, name, os.fdopen(read, "r" if text else "rb"))
                ends.append(write)
                mine.append(write)
            elif where == subprocess.STDOUT:
                ends.append(ends[1])
            elif where in (None, subprocess.DEVNULL):
                ends.append(devnull if where == subprocess.DEVNULL else (1 if name == "stdout" else 2))
            else:
                ends.append(where.fileno())
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._conn.connect(server.path)
            _send(self._conn, {"args": args, "env": env, "cwd": str(cwd)}, ends)
        finally:
            for fd in mine:
                os.close(fd)
        answer, _ = _recv(self._conn)
        if answer is None:
            raise RuntimeError(f"fork server refused {args}")
        self.pid = int(answer["pid"])

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._conn], [], [], 0)[0]:
            self._read_status()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._conn], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._read_status()
        return self.returncode

    def _read_status(self) -> None:
        global forked_cpu_seconds
        answer, _ = _recv(self._conn)
        self.returncode = int(answer["returncode"]) if answer else -signal.SIGKILL
        forked_cpu_seconds += answer["cpu_seconds"] if answer else 0.0
        self._conn.close()

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        """Read stdout and stderr to their end, then wait (as Popen.communicate does)."""
        results: dict[str, str] = {}
        readers = [threading.Thread(target=lambda n=n, f=f: results.__setitem__(n, f.read()), daemon=True)
                   for n, f in (("stdout", self.stdout), ("stderr", self.stderr)) if f is not None]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        for f in (self.stdout, self.stderr):
            if f is not None:
                f.close()
        return results.get("stdout"), results.get("stderr")

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.folder = tempfile.mkdtemp(prefix="fashionlab-forkserver-")
        self.path = os.path.join(self.folder, "socket")
        self.process = subprocess.Popen([sys.executable, str(HERE), self.path], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the fork server did not start (see its stderr above)")

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))
        os.rmdir(self.folder)


_servers: dict[tuple, _Server] = {}
# CPU seconds of the forked processes that have ended (tests/cpu_times.py adds them to the test's).
forked_cpu_seconds = 0.0


def _is_key(name: str) -> bool:
    return name in KEY_VARS or name.startswith(KEY_PREFIXES)


def _server_for(env: dict[str, str]) -> _Server:
    names = sorted({n for n in (*env, *os.environ) if _is_key(n)})
    key = tuple((name, env.get(name)) for name in names)
    if key not in _servers:
        base = {k: v for k, v in os.environ.items() if not _is_key(k)}
        keyed = {k: v for k, v in key if v is not None}
        _servers[key] = _Server({**base, **keyed})
    return _servers[key]


@atexit.register
def _close_servers() -> None:
    while _servers:
        _servers.popitem()[1].close()


def popen(args: list[str], env: dict[str, str], cwd: Path, **kwargs) -> ForkedProcess:
    """Start `python ARGS...` (a script path or `-m module`, then its arguments) as a forked process."""
    return ForkedProcess(_server_for(env), [str(a) for a in args], env, cwd, **kwargs)


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`subprocess.run(..., capture_output=True, text=True)` for a forked process."""
    process = popen(args, env, cwd)
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess([sys.executable, *args], process.returncode, out, err)


if __name__ == "__main__":
    served = _serve(sys.argv[1])
    if served is not None:
        _become_script(*served)
