"""The public surface is deliberate: pinned here, loaded lazily."""

import subprocess
import sys

import keel


def test_public_api_is_pinned_and_resolves() -> None:
    assert keel.__all__ == sorted(
        [
            "Explainer",
            "Registry",
            "evaluate_version",
            "load_spec",
            "parse_spec",
            "run_project",
            "top_reasons",
        ]
    )
    for name in keel.__all__:
        assert callable(getattr(keel, name))


def test_importing_keel_loads_no_heavy_library() -> None:
    code = (
        "import sys, keel; print(sorted(m for m in "
        "('mlflow', 'lightgbm', 'pandas', 'sklearn', 'numba', 'pyspark') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
