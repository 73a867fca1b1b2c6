"""The KeelError tree: every error says what was wrong and what is accepted.

Each subclass also inherits the matching built-in, so callers may catch either
``keel.errors.SpecError`` or plain ``ValueError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KeelError(Exception):
    """Root of every error Keel raises on purpose."""

    exit_code: int = 1


class SpecError(KeelError, ValueError):
    """The project spec (keel.yaml) is malformed: names the key path and what it accepts."""

    exit_code = 2


class DataError(KeelError, ValueError):
    """A data source cannot be read or has the wrong shape."""

    exit_code = 3


class ContractError(KeelError, ValueError):
    """Data broke its contract; ``report`` holds every failure found."""

    exit_code = 4

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class TrainingError(KeelError, RuntimeError):
    """Training could not produce a model (for example, a split with one class)."""

    exit_code = 5


class RegistryError(KeelError, RuntimeError):
    """The model registry refused an operation or holds no such model."""

    exit_code = 6


class IntegrityError(KeelError, RuntimeError):
    """A stored artifact does not match its recorded hash or is not an accepted format."""

    exit_code = 7


class CardError(KeelError, FileNotFoundError):
    """A model card to render again is not stored where it should be."""

    exit_code = 10


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


class EngineError(KeelError, RuntimeError):
    """The cluster named by --cluster could not be reached or started."""

    exit_code = 11


class FeatureStoreError(KeelError, ConnectionError):
    """The online feature store cannot be reached, or an event kept changing during one update."""

    exit_code = 12
