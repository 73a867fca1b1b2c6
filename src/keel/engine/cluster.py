"""The engine a batch stage runs on: in-process, a local Dask cluster, or a running one.

``--cluster`` picks it: absent for in-process, ``local`` for a ``LocalCluster`` of worker
processes on this machine, or a scheduler address such as ``tcp://10.0.0.5:8786``. Code
never changes between them; only this choice does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keel.errors import EngineError

_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://\S+$")


@dataclass(frozen=True)
class Engine:
    """An open engine: ``client`` is None when stages run in this process.

    ``local`` is True for a ``LocalCluster`` this process started: its workers share this
    machine's disk, so a temporary file here is a place they can all reach.
    """

    client: Any = None
    address: str = "in-process"
    local: bool = False

    @property
    def distributed(self) -> bool:
        """True when stages run on Dask workers."""
        return self.client is not None

    def workers(self) -> int:
        """How many workers the cluster has now (1 in process)."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"]) if self.client else 1


def check_cluster(cluster: str | None) -> str | None:
    """Validate a --cluster value before anything starts; returns it unchanged."""
    if cluster in (None, "", "local") or _ADDRESS.match(cluster):
        return cluster or None
    raise EngineError(
        f"--cluster '{cluster}' is neither 'local' nor a scheduler address such as "
        "tcp://host:8786; leave it out to run in this process"
    )


@contextmanager
def open_engine(
    cluster: str | None = None, *, workers: int = 2, memory_limit: str = "auto"
) -> Iterator[Engine]:
    """Open the engine ``cluster`` names (see the module doc) and close what was started on exit."""
    cluster = check_cluster(cluster)
    if cluster is None:
        yield Engine()
        return
    from distributed import Client, LocalCluster

    if cluster == "local":
        local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=memory_limit,
        )  # any free port, never a clash
        try:
            with Client(local) as client:
                yield Engine(client, local.scheduler_address, local=True)
        finally:
            local.close()
        return
    try:
        client = Client(cluster, timeout="20s")
    except (OSError, TimeoutError) as err:
        raise EngineError(f"cannot reach the Dask scheduler at {cluster}: {err}") from err
    try:
        yield Engine(client, cluster)
    finally:
        client.close()
