"""The model registry: MLflow runs and model versions behind one small, explicit object.

Keel talks to MLflow only through an ``MlflowClient`` it owns (no fluent API, no
module-level active run). By default the store is a SQLite file and a local artifact
folder under the project directory, so ``mlflow ui --backend-store-uri`` shows the
same runs; any tracking URI (PostgreSQL, a server) works by configuration.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import IntegrityError, RegistryError
from keel.io.stores import SETTINGS_HINT, storage_errors
from keel.models.artifact import MANIFEST, Entry, KeelModel, check_listing, list_folder, read_file

MODEL_PATH = "model"
TAG_PREFIX = "keel."


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version and the facts Keel recorded with it."""

    name: str
    version: int
    run_id: str
    source: str
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def tag(self, key: str, default: str | None = None) -> str | None:
        """A Keel tag (``keel.<key>``) of this version."""
        return self.tags.get(TAG_PREFIX + key, default)


def default_tracking_uri(project_dir: Path) -> str:
    """The SQLite tracking store under a project directory."""
    return f"sqlite:///{(project_dir / 'mlflow.db').resolve()}"


class Registry:
    """Runs and model versions of one MLflow store.

    Not shared between threads: each thread or process makes its own Registry. The
    SQL store underneath serializes concurrent writers.
    """

    def __init__(self, tracking_uri: str, *, artifact_root: Path | str | None = None) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def for_project(
        cls, project_dir: Path, tracking_uri: str | None = None, artifact_root: str | None = None
    ) -> Registry:
        """The registry a project uses: the given URI, else SQLite + artifacts in the project.

        ``artifact_root`` (a folder, or an object-store URL such as ``s3://bucket/mlflow``)
        replaces the project's ``artifacts/`` folder for experiments created from now on.
        """
        project_dir.mkdir(parents=True, exist_ok=True)
        uri = tracking_uri or default_tracking_uri(project_dir)
        if artifact_root is not None and "://" in artifact_root:
            return cls(uri, artifact_root=artifact_root.rstrip("/"))
        folder = Path(artifact_root) if artifact_root else project_dir / "artifacts"
        return cls(uri, artifact_root=folder.resolve())

    # runs -----------------------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of the named experiment, created on first use."""
        from mlflow.exceptions import MlflowException

        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if isinstance(self.artifact_root, str):  # an object-store URL: one plain name under it
            if "/" in name or "\\" in name or set(name) <= {"."}:
                raise RegistryError(
                    f"experiment '{name}' cannot name a location under {self.artifact_root}; "
                    "name it with letters, digits, '.', '_' and '-' only"
                )
            location = f"{self.artifact_root}/{name}"
        elif self.artifact_root is not None:
            folder = (self.artifact_root / name).resolve()
            if (
                not folder.is_relative_to(self.artifact_root.resolve())
                or folder == self.artifact_root.resolve()
            ):
                raise RegistryError(
                    f"experiment '{name}' would keep its artifacts at {folder}, outside the "
                    f"project's {self.artifact_root}; name it with letters, digits, '.', '_' and "
                    "'-' only"
                )
            location = folder.as_uri()
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
        """Open a run and return its id."""
        run = self._client.create_run(
            self.experiment_id(experiment), run_name=run_name, tags=dict(tags)
        )
        return run.info.run_id

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log params, metrics and tags in one batch."""
        from mlflow.entities import Metric, Param, RunTag

        self._client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), 0, 0) for k, v in (metrics or {}).items() if v is not None
            ],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Store a text artifact (a spec, a report) with the run."""
        self._client.log_text(run_id, text, artifact_file)

    def log_dir(self, run_id: str, local_dir: Path, artifact_path: str) -> None:
        """Store a folder of files with the run."""
        self._client.log_artifacts(run_id, str(local_dir), artifact_path)

    def finish_run(self, run_id: str, *, failed: bool = False) -> None:
        """Close a run as FINISHED or FAILED."""
        self._client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")

    # model versions ---------------------------------------------------------------------
    def register(
        self, name: str, run_id: str, *, tags: Mapping[str, str], description: str = ""
    ) -> VersionInfo:
        """Register the run's model folder as a new version of ``name``."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise RegistryError(f"cannot create registered model '{name}': {err}") from err
        source = f"{self._client.get_run(run_id).info.artifact_uri}/{MODEL_PATH}"
        version = self._client.create_model_version(
            name,
            source=source,
            run_id=run_id,
            tags={TAG_PREFIX + k: v for k, v in tags.items()},
            description=description,
        )
        return self.version(name, int(version.version))

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Record one more Keel fact on a version."""
        self._client.set_model_version_tag(name, str(version), TAG_PREFIX + key, value)

    def delete_version(self, name: str, version: int) -> None:
        """Remove a version that never became complete (its run is kept, marked failed)."""
        self._client.delete_model_version(name, str(version))

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` (for example 'champion') at a version; one version per alias."""
        self._client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from the model (it then points at no version)."""
        self._client.delete_registered_model_alias(name, alias)

    def alias(self, name: str, alias: str) -> VersionInfo | None:
        """The version an alias points at, or None when the alias is not set."""
        from mlflow.exceptions import MlflowException

        try:
            return _info(self._client.get_model_version_by_alias(name, alias))
        except MlflowException:
            return None

    def model_names(self) -> list[str]:
        """Every registered model name, sorted."""
        return sorted(m.name for m in self._client.search_registered_models())

    def versions(self, name: str) -> list[VersionInfo]:
        """All versions of ``name``, oldest first; unknown names are an error with a suggestion."""
        from keel.errors import did_you_mean

        names = self.model_names()
        if name not in names:
            raise RegistryError(
                f"no registered model '{name}' in {self.tracking_uri}.{did_you_mean(name, names)}"
                f" Registered: {', '.join(names) or 'none'}"
            )
        found = self._client.search_model_versions(f"name = '{name}'")
        return sorted((_info(v) for v in found), key=lambda v: v.version)

    def version(self, name: str, version: int | str) -> VersionInfo:
        """One version of ``name``; ``'latest'`` is the newest."""
        if str(version) == "latest":
            versions = self.versions(name)
            if not versions:
                raise RegistryError(f"model '{name}' has no versions yet")
            return versions[-1]
        from mlflow.exceptions import MlflowException

        try:
            return _info(self._client.get_model_version(name, str(version)))
        except MlflowException:
            known = [v.version for v in self.versions(name)]
            raise RegistryError(
                f"model '{name}' has no version {version}; versions: {known}"
            ) from None

    def load_model(
        self, name: str, version: int | str, *, expected_sha256: str | None = None
    ) -> tuple[KeelModel, VersionInfo]:
        """Fetch a version's two files and load them, always checking their fingerprint.

        The fingerprint is the one recorded at registration. A version without a valid
        ``keel.model_sha256`` tag cannot be verified and is refused; ``expected_sha256`` (the
        audit log's record) overrides the tag as what the files must match.
        """
        info = self.version(name, version)
        expected = expected_sha256 or _registered_sha256(info)
        where = f"{name} v{info.version} at {info.source}"
        with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
            names, read = self._fetch(info.source, Path(tmp), where=where)
            model = KeelModel.from_files(
                read(MANIFEST), read, names=names, where=where, expected_sha256=expected
            )
        return model, info

    def _fetch(
        self, source: str, destination: Path, *, where: str
    ) -> tuple[list[str], Callable[[str], bytes]]:
        """The names of a version's files and a reader of one by name; the listing is checked first.

        Extra, hidden, folder or symlink entries and files over MAX_FILE_BYTES are refused before
        anything is read; the reader then reads (or downloads into ``destination``) only the file
        asked for.
        """
        if source.startswith("file://"):
            from urllib.parse import unquote, urlparse

            folder = Path(unquote(urlparse(source).path))
            if not folder.is_dir():
                raise RegistryError(f"model files at {folder} are missing")
            return check_listing(list_folder(folder), where=where), lambda name: read_file(
                folder / name
            )
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        try:
            listed = mlflow.artifacts.list_artifacts(
                artifact_uri=source, tracking_uri=self.tracking_uri
            )
        except storage_errors(MlflowException) as error:
            raise RegistryError(
                f"cannot list model files at {source}: {error}; {SETTINGS_HINT}"
            ) from error
        names = check_listing([_artifact_entry(found, where) for found in listed], where=where)

        def download(name: str) -> bytes:
            url = f"{source.rstrip('/')}/{name}"
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=url, dst_path=str(destination), tracking_uri=self.tracking_uri
                )
            except storage_errors(MlflowException) as error:
                raise RegistryError(
                    f"cannot read model file {url}: {error}; {SETTINGS_HINT}"
                ) from error
            return read_file(Path(local))

        return names, download


def _registered_sha256(info: VersionInfo) -> str:
    """The manifest sha256 recorded at registration; refused when missing or not 64 hex digits."""
    tag, value = TAG_PREFIX + "model_sha256", info.tag("model_sha256")
    if not value:
        raise IntegrityError(
            f"model '{info.name}' version {info.version} has no {tag} tag (the sha256 of "
            f"{MANIFEST} recorded at registration); the model cannot be verified, so Keel refuses "
            "to load it"
        )
    if len(value) != 64 or not set(value.lower()) <= set("0123456789abcdef"):
        raise IntegrityError(
            f"model '{info.name}' version {info.version}: tag {tag} is {value!r}, not a sha256 "
            "(64 hex digits); the model cannot be verified, so Keel refuses to load it"
        )
    return value.lower()


def _artifact_entry(found: Any, where: str) -> Entry:
    """An MLflow FileInfo as a listing entry.

    A file whose size the store does not report is refused.
    """
    name = posixpath.basename(found.path.rstrip("/"))
    if found.is_dir:
        return Entry(name, "dir", 0)
    if found.file_size is None:
        raise IntegrityError(
            f"{where}: the artifact store lists {name} without a size; "
            "Keel does not download a model file it cannot bound"
        )
    return Entry(name, "file", int(found.file_size))


def _info(version: Any) -> VersionInfo:
    return VersionInfo(
        name=version.name,
        version=int(version.version),
        run_id=version.run_id,
        source=version.source,
        created_ms=int(version.creation_timestamp or 0),
        tags=dict(version.tags or {}),
        description=version.description or "",
    )


def as_json(info: VersionInfo) -> str:
    """A version as indented JSON, for the CLI."""
    return json.dumps(info.__dict__, indent=2, sort_keys=True)
