"""``keel export mlflow``: a governed version as a pickle-free MLflow pyfunc ("models from code").

What may be exported: a version a second person approved, as the audit log has it: state
``approved``, ``champion`` or ``retired`` (retired versions were champion once and may be
rolled back to). A candidate, validated or rejected version, one the audit log never
registered, or any version while the audit log does not verify, is refused. The files are
checked against the fingerprint the audit log recorded at registration before they are
copied; the export is written under a temporary name, checked to hold no pickle, recorded in
the audit log (action ``export``, which changes no lifecycle state) and only then renamed
into place.

The exported folder is an ordinary MLflow model: ``MLmodel``, the code file
(:mod:`keel.export.pyfunc_entry`), Keel's own source under ``code/`` (so the model needs no
Keel package installed beside it, only the pinned libraries in ``requirements.txt``), and
the Keel files under ``artifacts/keel_model/``, whose sha256 the loader checks against the
one recorded in the MLmodel's ``model_config``. The MLmodel's ``metadata.keel`` says which
version it is, its state at export, who exported it and the audit row.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from importlib import metadata as dist
from pathlib import Path
from typing import Any

from keel.errors import IntegrityError, KeelError
from keel.export import pyfunc_entry
from keel.export.pyfunc import ARTIFACT, load_exported
from keel.models.artifact import KeelModel, looks_like_pickle
from keel.registry.governance import Governance, GovernanceError

EXPORTABLE = ("approved", "champion", "retired")
_KEEL_SOURCE = Path(__file__).resolve().parents[1]  # the keel package shipped as code_paths
# MLflow refuses int64 values for a double column and floats for a long one, so numeric columns
# take any type there; Keel's own preprocessing checks them, as it does for `keel score`.
_TYPES = {"str": "string", "bool": "boolean", "datetime": "datetime"}


class ExportError(KeelError, FileExistsError):
    """The export's destination is taken, or the written export is not what it must be."""

    exit_code = 2


@dataclass(frozen=True)
class ExportResult:
    """Where a version went, what it was, and the audit row that records it."""

    name: str
    version: int
    state: str
    model_sha256: str
    path: Path
    audit_seq: int


def export_mlflow(
    governance: Governance,
    name: str,
    version: int | str,
    output: Path,
    *,
    actor: str,
    by: str,
) -> ExportResult:
    """Write ``name`` ``version`` to the folder ``output`` as an MLflow pyfunc and audit it.

    ``actor`` is how the audit log names who exported it (``user:<id>`` or
    ``unverified:<name>``), ``by`` their display name. See the module docstring for what may
    be exported.
    """
    if output.exists():
        raise ExportError(f"{output} exists; give --output a folder that does not exist yet")
    problems = governance.audit.verify()
    if problems:
        raise GovernanceError(
            f"the audit log does not verify ({problems[0].kind}: {problems[0].detail}); "
            "nothing is exported until it does (keel audit verify names every problem)"
        )
    info = governance.registry.version(name, version)
    state = governance.state(info)
    if state not in EXPORTABLE:
        raise GovernanceError(
            f"{name}/v{info.version} is '{state}'; only a version approved by a second person "
            f"({', '.join(EXPORTABLE)}) can be exported (keel approve first)"
        )
    audited_sha = governance.registered_sha256(name, info.version)
    if not audited_sha or info.tag("model_sha256") != audited_sha:
        raise IntegrityError(
            f"{name} v{info.version}: the registry's model_sha256 {info.tag('model_sha256')} is "
            f"not the {audited_sha} the audit log recorded at registration; refusing to export it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(prefix="keel-export-") as tmp:
            files, model = _fetch_verified(governance, info.source, Path(tmp), audited_sha)
            config = {"model_sha256": audited_sha, "name": name, "version": info.version}
            keel_meta = {
                "name": name,
                "version": info.version,
                "state": state,
                "model_sha256": audited_sha,
                "family": model.family,
                "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "exported_by": by,
                "registry": governance.registry.tracking_uri,
            }
            _save(partial, files, config, model, keel_meta, Path(tmp) / "code")
        _check_export(partial, config)
        row = governance.audit.append(
            actor=actor,
            action="export",
            obj=f"{name}/v{info.version}",
            before={"state": state},
            after={
                "format": "mlflow-pyfunc (models from code)",
                "model_sha256": audited_sha,
                "path": str(output.resolve()),
                "by": by,
            },
            reason=f"keel export mlflow to {output}",
        )
        partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return ExportResult(name, info.version, state, audited_sha, output, row.seq)


def _fetch_verified(
    governance: Governance, source: str, tmp: Path, expected: str
) -> tuple[Path, KeelModel]:
    """Download a version's files into ``tmp``/keel_model; the folder and the model they hold,
    checked against ``expected``."""
    import mlflow.artifacts

    fetched = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=source,
            dst_path=str(tmp / "fetched"),
            tracking_uri=governance.registry.tracking_uri,
        )
    )
    folder = tmp / ARTIFACT
    shutil.copytree(fetched, folder)
    # the bytes to ship are the audited ones
    return folder, KeelModel.load(folder, expected_sha256=expected)


def _save(
    path: Path,
    files: Path,
    config: dict[str, Any],
    model: KeelModel,
    keel_meta: dict[str, Any],
    code: Path,
) -> None:
    """mlflow.pyfunc.save_model with the code file, Keel's source and the verified files."""
    import mlflow.pyfunc

    shutil.copytree(
        _KEEL_SOURCE, code / "keel", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    with warnings.catch_warnings():  # the signature stands in for an example table
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(Path(pyfunc_entry.__file__).resolve()),
            artifacts={ARTIFACT: str(files)},
            model_config=config,
            code_paths=[str(code / "keel")],
            signature=_signature(model),
            pip_requirements=_requirements(),
            metadata={"keel": keel_meta},
            uv_project_path=str(code),  # not the caller's folder: its uv.lock is not the model's
        )


def _signature(model: KeelModel) -> Any:
    """Input columns and types: the model's contract, the columns ``keel score`` reads.

    Numbers are of any numeric type (Keel checks them); every column may be missing. The
    output columns are those ``keel score`` writes.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(_TYPES.get(rule["dtype"]) or AnyType(), column, required=False)
        for column, rule in (model.metadata.get("contract") or {}).items()
    ]
    outputs: list[ColSpec | TensorSpec] = [
        ColSpec("double", "probability"),
        ColSpec("string", "decision"),
        ColSpec("string", "reasons"),
        ColSpec("string", "model"),
        ColSpec("long", "version"),
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def _requirements() -> list[str]:
    """Keel's own runtime libraries pinned to the versions installed here (not Keel itself).

    Keel travels as source in the export, so no package index is asked for a 'keel'.
    """
    from packaging.requirements import Requirement

    needed = [Requirement(text) for text in dist.requires("keel") or []]
    return [
        f"{r.name}=={dist.version(r.name)}"
        for r in needed
        if r.marker is None or "extra" not in str(r.marker)
    ]


def _check_export(path: Path, config: dict[str, Any]) -> None:
    """The written export loads and verifies, and no file in it is (or starts like) a pickle."""
    for found in path.rglob("*"):
        if not found.is_file():
            continue
        with found.open("rb") as handle:
            head = handle.read(2)
        if found.suffix in (".pkl", ".pickle", ".cloudpickle") or looks_like_pickle(head):
            raise ExportError(f"{found} is a pickle; a Keel export holds none")
    load_exported(path / "artifacts" / ARTIFACT, config)
