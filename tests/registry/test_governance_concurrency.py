"""8 processes x 25 approve/promote calls: one champion at every look, one audit row per change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from keel.lifecycle.run import run_project
from keel.registry.governance import Governance
from keel.spec import load_spec

pytestmark = pytest.mark.slow
WORKERS, OPERATIONS, VERSIONS = 8, 25, 8

WORKER = """
import json, sys
from pathlib import Path
from keel.registry.governance import Governance, GovernanceError
governance = Governance.for_project(Path(sys.argv[1]))
worker = int(sys.argv[2])
done = refused = 0
for i in range(int(sys.argv[3])):
    version = (worker * 3 + i) % int(sys.argv[4]) + 1
    try:
        if i % 2 == 0:
            governance.approve("loans", version, by=f"validator{worker}", role="validator", note=f"op {i}")
        else:
            governance.promote("loans", version, by=f"deployer{worker}", role="deployer", note=f"op {i}")
        done += 1
    except GovernanceError:
        refused += 1
print(json.dumps({"done": done, "refused": refused}))
"""


def _snapshot(governance: Governance) -> tuple[int | None, list[int]]:
    """Champion alias and versions whose state says champion, read under the lifecycle lock."""
    with governance.audit.engine.begin() as conn:
        governance.audit.lock(conn)
        champion = governance.champion("loans")
        states = [v.version for v in governance.registry.versions("loans") if governance.state(v) == "champion"]
    return (champion.version if champion else None), states


def test_concurrent_approve_and_promote_keep_one_champion_and_a_full_audit(loans_project: Path) -> None:
    raw = yaml.safe_load(loans_project.read_text())
    raw["tuning"]["trials"] = 1
    raw["models"] = {"families": ["logistic"]}
    loans_project.write_text(yaml.safe_dump(raw))
    project_dir = loans_project.parent / ".keel"
    for _ in range(VERSIONS):
        run_project(load_spec(loans_project), project_dir=project_dir, author="ana", with_card=False)
    governance = Governance.for_project(project_dir)
    audit_before = len(governance.audit.rows())

    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(project_dir), str(w), str(OPERATIONS), str(VERSIONS)],
                         stdout=subprocess.PIPE, text=True)
        for w in range(WORKERS)
    ]
    looks = []
    while any(w.poll() is None for w in workers) and len(looks) < 2000:
        looks.append(_snapshot(governance))
        time.sleep(0.05)
    outputs = [json.loads(w.communicate(timeout=300)[0]) for w in workers]

    assert [w.returncode for w in workers] == [0] * WORKERS
    assert sum(o["done"] + o["refused"] for o in outputs) == WORKERS * OPERATIONS
    done = sum(o["done"] for o in outputs)
    assert done >= VERSIONS  # every version gets approved at least once
    assert len(governance.audit.rows()) - audit_before == done
    assert governance.audit.verify() == []
    for champion, states in looks + [_snapshot(governance)]:
        assert states == ([] if champion is None else [champion])
    assert [v.version for v in governance.registry.versions("loans")] == list(range(1, VERSIONS + 1))
    assert sum(1 for c, _ in looks if c is not None) > 0
