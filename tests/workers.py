"""Work that the concurrency tests run in separate processes, started by a fork server.

The fork server imports MLflow, Keel's registry and the database driver once; each worker
forked from it starts at once instead of paying seconds of imports, and still opens its
own connections. (The fork server does not see pytest's ``pythonpath``, so it preloads
only installed modules, and this module imports nothing heavy of its own.)
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from keel.registry.audit import AuditLog, open_database
from keel.registry.governance import Governance, GovernanceError
from keel.registry.principal import Principal

PRELOAD = [
    "keel.registry.governance",
    "psycopg2",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
]


def fork_context() -> ForkServerContext:
    """The multiprocessing context whose fork server has the heavy imports done."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def append_many(url: str, worker: int, rows: int, start: Barrier) -> None:
    """Open the audit log with the other workers (maybe creating it), then append ``rows`` rows."""
    engine = open_database(url)
    start.wait(timeout=60)
    log = AuditLog(engine)
    for i in range(rows):
        log.append(actor=f"w{worker}", action="test", obj=f"o{i}")


def approve_and_promote(
    where: tuple[Path, str, str],
    worker: int,
    operations: int,
    versions: int,
    results: Queue,
    validator: Principal,
    deployer: Principal,
) -> None:
    """Alternate approve and promote over the versions; put (done, refused) on ``results``.

    ``where`` is the project folder, tracking URI and governance URI.
    """
    governance = Governance.for_project(*where)
    done = refused = 0
    for i in range(operations):
        version = (worker * 3 + i) % versions + 1
        try:
            if i % 2 == 0:
                governance.approve("loans", version, by=validator, note=f"op {i}")
            else:
                governance.promote("loans", version, by=deployer, note=f"op {i}")
            done += 1
        except GovernanceError:
            refused += 1
    results.put((done, refused))
