"""Joining the other processes of a launch that a scheduler started (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT; srun; LSF), before Lightning sets up the process group.

Each process waits at most `training.join_timeout_s` for all the others to arrive at
MASTER_ADDR:MASTER_PORT, then either goes on together with them or stops with one line naming
what was missing. Without it a process whose peer never comes (rank 0 refused its folder, a node
failed to start) waits for torch's process-group timeout (30 minutes). Global rank 0 serves the
join from a TCPStore on MASTER_PORT that torch's own rendezvous then shares (a multi-tenant
store in the same process), so the process group starts on the same port without rebinding it.
torchrun's agents join before they start any process (their own --rdzv-conf join_timeout), and
the processes Lightning starts itself are started by rank 0: for those nothing is done here.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from typing import Any

from lightning.fabric.plugins.environments import LightningEnvironment, TorchElasticEnvironment
from torch.distributed import DistError, TCPStore

from fashionlab.errors import ConfigError, DistributedJoinError

# Rank 0's join store: kept for the process's life, so that torch's rendezvous reuses its server.
_SERVED: dict[int, TCPStore] = {}
KEY = "fashionlab/joined/{}"


def join_peers(address: str, port: int, rank: int, world_size: int, timeout_s: float) -> None:
    """Wait until all `world_size` processes have joined at `address:port` (rank 0 serves it);
    DistributedJoinError when they have not within `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    where = f"{address}:{port}"

    def failure(what: str) -> DistributedJoinError:
        return DistributedJoinError(
            f"rank {rank} of {world_size}: {what} within training.join_timeout_s={timeout_s:g} s "
            f"(every process must start with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE; "
            f"see the first failing process's error)")

    try:
        if rank == 0:
            store = _SERVED.get(port) or TCPStore(
                address, port, world_size, is_master=True, wait_for_workers=False, multi_tenant=True,
                timeout=timedelta(seconds=max(timeout_s, 1.0)))
        else:
            if not _port_opens(address, port, deadline):
                raise failure(f"rank 0 did not open {where}")
            store = TCPStore(address, port, world_size, is_master=False, wait_for_workers=False,
                             timeout=timedelta(seconds=max(deadline - time.monotonic(), 1.0)))
        store.set(KEY.format(rank), "1")
        keys = [KEY.format(r) for r in range(world_size)]
        while not store.check(keys):
            if time.monotonic() > deadline:
                joined = sum(store.check([k]) for k in keys)
                raise failure(f"{joined} of {world_size} processes joined at {where}")
            time.sleep(0.2)
    except DistError as err:
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise failure(f"could not join at {where} ({message})") from err
    if rank == 0:
        _SERVED[port] = store


def _port_opens(address: str, port: int, deadline: float) -> bool:
    """Whether something accepts connections at address:port before `deadline` (tried quietly,
    unlike TCPStore's own retries, which log each failed attempt)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            with socket.create_connection((address, port), timeout=min(left, 2.0)):
                return True
        except OSError:
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))


def join_launch(trainer: Any, timeout_s: float) -> None:
    """Join the other processes of an externally started launch (see the module's docstring);
    nothing for a single process, torchrun, or the processes Lightning starts itself."""
    strategy = trainer.strategy
    environment = getattr(strategy, "cluster_environment", None)
    if (environment is None or not environment.creates_processes_externally
            or isinstance(environment, TorchElasticEnvironment)):
        return
    if isinstance(environment, LightningEnvironment):
        if "RANK" not in os.environ:  # started by Lightning's own launcher (LOCAL_RANK only)
            return
        _check_launch_size(strategy)
    strategy.set_world_ranks()
    if strategy.world_size > 1:
        join_peers(environment.main_address, environment.main_port, strategy.global_rank,
                   strategy.world_size, timeout_s)


def _check_launch_size(strategy: Any) -> None:
    """RANK and WORLD_SIZE as launched agree with trainer.num_nodes x trainer.devices."""
    strategy.set_world_ranks()
    launched = {"RANK": strategy.global_rank, "WORLD_SIZE": strategy.world_size}
    for key, planned in launched.items():
        value = os.environ.get(key, "").strip()
        if value and value != str(planned):
            raise ConfigError(
                f"{key}={value} in the environment, but trainer.num_nodes={strategy.num_nodes} x "
                f"trainer.devices={strategy.num_processes} with NODE_RANK={strategy.node_rank} and "
                f"LOCAL_RANK={strategy.local_rank} make it {planned}; set trainer.num_nodes and "
                f"trainer.devices to match the launch")
