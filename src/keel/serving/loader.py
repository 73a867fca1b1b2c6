"""Loading the version an alias points at (the champion by default), hash-checked, into a scoring engine."""

from __future__ import annotations

from keel.errors import RegistryError
from keel.registry.store import Registry
from keel.serving.engine import ScoringEngine


def load_alias(registry: Registry, name: str, alias: str = "champion") -> ScoringEngine:
    """The engine for ``name@alias``; raises when the alias is unset or the files fail their hash check."""
    info = registry.alias(name, alias)
    if info is None:
        raise RegistryError(f"model '{name}' has no version with alias '{alias}'; promote one first "
                            f"(keel promote VERSION --by NAME)")
    model, info = registry.load_model(name, info.version)
    return ScoringEngine(model, name, info.version)
