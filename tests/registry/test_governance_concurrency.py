"""8 processes x 25 approve/promote calls: one champion at every look, one audit row per call.

On SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from keel.registry.governance import Governance

from backends import Store
from factories import register_version
from people import enrol
from workers import approve_and_promote, fork_context

pytestmark = pytest.mark.slow
WORKERS, OPERATIONS, VERSIONS = 8, 25, 8


def _snapshot(governance: Governance) -> tuple[int | None, list[int]]:
    """Champion alias and versions whose state says champion, read under the lifecycle lock."""
    with governance.audit.engine.begin() as conn:
        governance.audit.lock(conn)
        champion = governance.champion("loans")
        states = [
            v.version
            for v in governance.registry.versions("loans")
            if governance.state(v) == "champion"
        ]
    return (champion.version if champion else None), states


def test_concurrent_approve_and_promote_keep_one_champion_and_a_full_audit(
    store: Store, saved_model: Path
) -> None:
    people = enrol(store.project_dir, store.tracking_uri, store.governance_uri)
    governance = people.service.governance
    for _ in range(VERSIONS):
        register_version(governance, saved_model, author=people.dev)
    audit_before = len(governance.audit.rows())

    context = fork_context()
    results = context.Queue()
    where = (store.project_dir, store.tracking_uri, store.governance_uri)
    workers = [
        context.Process(
            target=approve_and_promote,
            args=(where, w, OPERATIONS, VERSIONS, results, people.val, people.dep),
        )
        for w in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    looks = []
    while any(w.is_alive() for w in workers) and len(looks) < 2000:
        looks.append(_snapshot(governance))
        time.sleep(0.05)
    for worker in workers:
        worker.join(timeout=300)

    assert [w.exitcode for w in workers] == [0] * WORKERS
    outputs = [results.get(timeout=10) for _ in workers]
    assert sum(d + r for d, r in outputs) == WORKERS * OPERATIONS
    done = sum(d for d, _ in outputs)
    assert done >= VERSIONS  # every version gets approved at least once
    assert (
        len(governance.audit.rows()) - audit_before == WORKERS * OPERATIONS
    )  # refusals are audited too
    assert sum(r.action != "refused" for r in governance.audit.rows()[audit_before:]) == done
    assert governance.audit.verify() == [] and governance.mismatches() == []
    for champion, states in looks + [_snapshot(governance)]:
        assert states == ([] if champion is None else [champion])
    assert [v.version for v in governance.registry.versions("loans")] == list(
        range(1, VERSIONS + 1)
    )
    assert sum(1 for c, _ in looks if c is not None) > 0
