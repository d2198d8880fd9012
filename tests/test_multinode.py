"""Multi-node training as a cluster scheduler launches it: every process is started by the scheduler
with RANK, LOCAL_RANK, NODE_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, all with the same pinned
hydra.run.dir (docs/recipes_and_scaling.md). Only global rank 0 claims and writes the run folder,
whichever process starts first; a rank whose peers never come fails within training.join_timeout_s."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from forkserver import ForkedProcess
from test_cache_training import QUIET, cached_folder_run, confusion_total, small_folder
from test_resume import script_env

from conftest import fork_start, tiny_overrides

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_env(rank: int, port: int) -> dict[str, str]:
    """What a scheduler gives each single-process node of a 2-node job (and one thread each: the
    nodes share this machine's cores)."""
    return script_env(RANK=str(rank), LOCAL_RANK="0", NODE_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")


def start_node(rank: int, port: int, args: list[str]) -> ForkedProcess:
    return fork_start(str(TESTS / "record_batches.py"), *args, env=node_env(rank, port),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(node: ForkedProcess, timeout: float) -> tuple[int, str]:
    try:
        _, err = node.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        node.kill()
        _, err = node.communicate()
        return -9, f"killed after {timeout} s: " + err[-3000:]
    return node.returncode, err


@pytest.mark.slow
def test_two_nodes_share_one_pinned_run_folder_in_either_start_order(tmp_path):
    root = small_folder(tmp_path / "images")
    runs, nodes = {}, {}
    for first in (1, 0):  # both launches at once, each with its own port, cache and run folder
        run = runs[first] = tmp_path / f"run-rank{first}-first"
        args = [*cached_folder_run(root, tmp_path / f"cache-{first}"), *QUIET, "data.num_workers=0",
                "backbone.name=test_resnet", "trainer=ddp", "trainer.accelerator=cpu",
                "trainer.devices=1", "trainer.num_nodes=2", "trainer.max_epochs=1",
                "training.join_timeout_s=300", f"hydra.run.dir={run}"]
        nodes[first] = (args, free_port(), {first: None})
    for first, (args, port, launch) in nodes.items():
        launch[first] = start_node(first, port, args)
    time.sleep(3)  # the other node of each launch starts about 3 s later (whatever the actual order)
    for first, (args, port, launch) in nodes.items():
        launch[1 - first] = start_node(1 - first, port, args)
    done = {(first, rank): finish(node, 600) for first, (_, _, launch) in nodes.items()
            for rank, node in launch.items()}
    assert all(rc == 0 for rc, _ in done.values()), done

    for run in runs.values():
        seen = [json.loads((run / f"seen-0-{rank}.json").read_text()) for rank in (0, 1)]
        assert len(seen[0]) == len(seen[1]) == 15  # ceil(29 / 2): one item repeated, none dropped
        assert set(seen[0] + seen[1]) == set(range(29))
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["data_num_train"], metrics["data_num_val"], metrics["data_num_test"]) == (29, 5, 6)
        assert confusion_total(run, "val", "label") == 5
        assert confusion_total(run, "test", "label") == 6
        # one record of the launch (rank 0's) and one log file; nothing else named after a rank
        assert len(list(run.glob("*.log"))) == 1
        assert sorted(p.name for p in run.glob(".*")) == [".hydra"]
        assert len(list(run.rglob("metrics.json"))) == 1


@pytest.mark.slow
def test_a_rank_whose_peers_never_come_fails_within_the_join_timeout(fmnist_dir, tmp_path):
    run = tmp_path / "run"
    args = [*tiny_overrides(fmnist_dir, run), "backbone.pretrained=false", "backbone.name=test_resnet",
            "data.image_size=32", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1",
            "trainer.num_nodes=2", "training.join_timeout_s=3"]
    node = fork_start("train.py", *args, env=node_env(1, free_port()), stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
    rc, err = finish(node, 300)  # without a join timeout it would wait 30 minutes (torch's default)
    assert rc == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: rank 1 of 2") and "training.join_timeout_s=3" in lines[0]
    assert not run.exists() or not any(run.iterdir())  # a rank other than 0 writes nothing there


def test_rank_zero_alone_gives_up_at_the_join_timeout():
    from fashionlab.errors import DistributedJoinError
    from fashionlab.training.multinode import join_peers

    started = time.monotonic()
    with pytest.raises(DistributedJoinError, match=r"rank 0 of 2: 1 of 2 processes joined"):
        join_peers("127.0.0.1", free_port(), rank=0, world_size=2, timeout_s=1.0)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(("env", "zero"), [
    ({}, True),
    ({"RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0"}, True),
    ({"RANK": "1", "LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # a scheduler's or torchrun's rank 1
    ({"LOCAL_RANK": "1"}, False),                  # a process Lightning's launcher started
    ({"NODE_RANK": "1"}, False),                   # Lightning's launch on the second node
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, False),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}, True),
])
def test_only_the_launchers_global_rank_zero_writes_hydras_record_and_log(monkeypatch, tmp_path,
                                                                           env, zero):
    from fashionlab import rundir

    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert rundir.launched_as_rank_zero() is zero
    folder = str(tmp_path / "run")
    assert rundir.hydra_subdir(folder) == (".hydra" if zero else None)
    assert rundir.rank_zero_file(f"{folder}/train.log") == (f"{folder}/train.log" if zero else os.devnull)
