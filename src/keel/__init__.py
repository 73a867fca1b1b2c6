"""Keel: from a tabular dataset and one spec to a governed, documented model.

The public API loads lazily, so ``import keel`` stays cheap::

    spec = keel.load_spec("keel.yaml")
    result = keel.run_project(spec, project_dir=Path(".keel"))
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

__version__ = metadata.version("keel")
__all__ = [
    "Explainer",
    "Registry",
    "evaluate_version",
    "load_spec",
    "parse_spec",
    "run_project",
    "top_reasons",
]

_EXPORTS = {
    "Explainer": "keel.explain.contributions",
    "Registry": "keel.registry.store",
    "evaluate_version": "keel.lifecycle.evaluate",
    "load_spec": "keel.spec",
    "parse_spec": "keel.spec",
    "run_project": "keel.lifecycle.run",
    "top_reasons": "keel.explain.reasons",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'keel' has no attribute {name!r}")
