"""Loading the version the audit log makes champion (or challenger), hash-checked, into an engine.

The MLflow alias of the same name is only a mirror: it is never what decides which
version serves. :func:`alias_disagreement` says when the mirror points elsewhere.
"""

from __future__ import annotations

from keel.errors import IntegrityError, RegistryError
from keel.registry.governance import CHALLENGER, CHAMPION, Governance
from keel.serving.served import ServedModel

GOVERNED = (CHAMPION, CHALLENGER)


def audited_version(governance: Governance, name: str, alias: str = CHAMPION) -> int | None:
    """The version the audit log gives ``alias`` ('champion' or 'challenger'), or None."""
    if alias not in GOVERNED:
        raise RegistryError(
            f"'{alias}' is not a governed alias; Keel serves only {' or '.join(GOVERNED)}, "
            "as the audit log sets them"
        )
    model = governance.ledger().model(name)
    return model.champion if alias == CHAMPION else model.challenger


def required_version(governance: Governance, name: str, alias: str = CHAMPION) -> int:
    """:func:`audited_version`, where having none is an error.

    The error is the one message (and exit code) for every command.
    """
    version = audited_version(governance, name, alias)
    if version is None:
        how = (
            "approve and promote one first (keel approve VERSION, keel promote VERSION)"
            if alias == CHAMPION
            else "keel retrain names one when its challenger awaits approval"
        )
        raise RegistryError(f"the audit log gives model '{name}' no {alias}; {how}")
    return version


def load_alias(governance: Governance, name: str, alias: str = CHAMPION) -> ServedModel:
    """The engine for the audited ``name@alias``.

    Its files must match the fingerprint the audit log recorded.
    """
    version = required_version(governance, name, alias)
    audited_sha = governance.registered_sha256(name, version)
    info = governance.registry.version(name, version)
    if not audited_sha or info.tag("model_sha256") != audited_sha:
        raise IntegrityError(
            f"{name} v{version}: the registry's model_sha256 {info.tag('model_sha256')} is not the "
            f"{audited_sha} the audit log recorded at registration; refusing to serve it"
        )
    model, info = governance.registry.load_model(name, version, expected_sha256=audited_sha)
    return ServedModel(model, name, info.version)


def alias_disagreement(governance: Governance, name: str, alias: str = CHAMPION) -> int | None:
    """The version MLflow's ``alias`` points at when that is not the audited one, else None."""
    audited = audited_version(governance, name, alias)
    mirrored = governance.registry.alias(name, alias)
    mirrored_version = mirrored.version if mirrored else None
    return None if mirrored_version == audited else (mirrored_version or 0)
