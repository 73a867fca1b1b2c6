"""Where a project keeps its runs, models and governance: the one way Keel opens them.

A :class:`ProjectStore` is made from a spec's ``registry`` settings and a project folder (or
from a folder alone, with every default), and opens the MLflow registry and the governance
store with those settings. Every command, flow and server opens them through it, so none
can read one store and write another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keel.registry.governance import Governance
from keel.registry.store import Registry
from keel.spec import ProjectSpec


@dataclass(frozen=True)
class ProjectStore:
    """A project's folder and the stores its spec names (None: the default inside the folder)."""

    folder: Path
    tracking_uri: str | None = None  # MLflow runs and versions; default: mlflow.db in the folder
    governance_uri: str | None = None  # the audit log and users; default: governance.db there
    checkpoints: str | None = None  # where signed audit checkpoints go; default: checkpoints/ in it
    model: str | None = None  # the spec's model name, when opened from a spec
    artifact_root: str | None = None  # MLflow artifacts (folder or s3:// URL); default artifacts/

    @classmethod
    def of(
        cls, spec: ProjectSpec | None, folder: Path, *, tracking_uri: str | None = None
    ) -> ProjectStore:
        """The stores named by ``spec``'s registry settings, in ``folder``.

        ``tracking_uri`` overrides the spec's.
        """
        if spec is None:
            return cls(folder, tracking_uri)
        settings = spec.registry
        return cls(
            folder,
            tracking_uri or settings.tracking_uri,
            settings.governance_uri,
            settings.checkpoints,
            spec.model_name(),
            settings.artifact_root,
        )

    def registry(self) -> Registry:
        """The MLflow-backed registry of runs and model versions."""
        return Registry.for_project(self.folder, self.tracking_uri, self.artifact_root)

    def governance(self, *, writer: bool = True, create: bool = False) -> Governance:
        """The governance store over the registry; a reader holds no signing key.

        Without ``create`` a missing governance store is an error (:meth:`Governance.for_project`).
        """
        return Governance.for_project(
            self.folder,
            self.tracking_uri,
            self.governance_uri,
            checkpoints=self.checkpoints,
            create=create,
            writer=writer,
        )
