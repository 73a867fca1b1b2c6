"""A registered model loads only if verified: its sha256 tag, exactly its two files, bounded sizes.

On SQLite and PostgreSQL, through ``Registry.load_model`` (file:// and MLflow-listed sources) and
``keel models show``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import IntegrityError
from keel.models.artifact import MANIFEST, KeelModel, sha256_bytes
from keel.registry.store import TAG_PREFIX, Registry, VersionInfo

from backends import Store
from factories import make_loans, register_version

pytestmark = pytest.mark.slow
TAG = TAG_PREFIX + "model_sha256"
NO_TAG = r"model 'loans' version 1 has no keel\.model_sha256 tag .*the model cannot be verified"


class _RegistryOnly:
    """What ``register_version`` needs of a Governance, minus the audit log.

    Loading never reads the audit log.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def record_registration(self, *args: object, **kwargs: object) -> None:
        """Nothing to audit here."""


def _registered(store: Store, saved_model: Path) -> tuple[Registry, VersionInfo, Path]:
    """Version 1 of 'loans' from the session's saved model, and the folder its files live in."""
    registry = Registry.for_project(store.project_dir, store.tracking_uri)
    info = register_version(_RegistryOnly(registry), saved_model)  # type: ignore[arg-type]
    source = Path(info.source.removeprefix("file://"))
    assert source.is_relative_to(store.project_dir) and source.is_dir()
    return registry, info, source


def _delete_tag(registry: Registry) -> None:
    registry._client.delete_model_version_tag("loans", "1", TAG)
    assert registry.version("loans", 1).tag("model_sha256") is None


def _show(store: Store) -> dict:
    """``keel models show loans 1`` on this store, parsed."""
    result = CliRunner().invoke(
        app,
        [
            "models",
            "show",
            "loans",
            "1",
            "--project-dir",
            str(store.project_dir),
            "--tracking-uri",
            store.tracking_uri,
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_version_without_its_sha256_tag_is_refused_and_models_show_says_failed(
    store: Store, saved_model: Path
) -> None:
    registry, _, _ = _registered(store, saved_model)
    assert _show(store)["integrity"].startswith("ok (logistic")
    _delete_tag(registry)
    with pytest.raises(IntegrityError, match=NO_TAG):
        registry.load_model("loans", 1)
    integrity = _show(store)["integrity"]
    assert integrity.startswith("FAILED: model 'loans' version 1 has no keel.model_sha256 tag")
    assert "the model cannot be verified" in integrity


@pytest.mark.parametrize("value", ["", "not-a-sha256", "0" * 63, "g" * 64])
def test_an_empty_or_malformed_sha256_tag_is_refused(
    store: Store, saved_model: Path, value: str
) -> None:
    registry, _, _ = _registered(store, saved_model)
    registry.set_version_tag("loans", 1, "model_sha256", value)
    with pytest.raises(
        IntegrityError, match=r"model 'loans' version 1.* the model cannot be verified"
    ):
        registry.load_model("loans", 1)


def test_an_edited_threshold_with_the_tag_removed_is_refused(
    store: Store, saved_model: Path
) -> None:
    """The issue's reproduction: the edit flipped decisions and ``keel models show`` said "ok"."""
    registry, _, source = _registered(store, saved_model)
    manifest = source / MANIFEST
    manifest.write_text(manifest.read_text().replace('"threshold": 0.5', '"threshold": 0.1'))
    with pytest.raises(IntegrityError, match="does not match the registered"):
        registry.load_model("loans", 1)
    _delete_tag(registry)
    with pytest.raises(IntegrityError, match=NO_TAG):
        registry.load_model("loans", 1)
    assert _show(store)["integrity"].startswith(
        "FAILED: model 'loans' version 1 has no keel.model_sha256 tag"
    )


def _add(source: Path, kind: str) -> str:
    """Put one unexpected entry of ``kind`` in the model folder; return the name the error shows."""
    if kind == "file":
        (source / "notes.txt").write_text("not part of the model")
        return "notes.txt"
    if kind == "folder":
        (source / "extra").mkdir()
        (source / "extra" / "big.bin").write_bytes(b"\0" * 1024)
        return "extra/"
    if kind == "hidden":
        (source / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        return ".DS_Store"
    (source / "elsewhere.json").symlink_to(source / MANIFEST)
    return "elsewhere.json"


@pytest.mark.parametrize("kind", ["file", "folder", "hidden", "symlink"])
def test_an_unexpected_entry_in_the_model_folder_is_refused_by_name(
    store: Store, saved_model: Path, kind: str
) -> None:
    registry, _, source = _registered(store, saved_model)
    listed = re.escape(repr([_add(source, kind)]))
    rule = (
        rf"{listed} are symbolic links"
        if kind == "symlink"
        else rf"unexpected entries {listed}; a Keel model folder holds only model\.json"
    )
    with pytest.raises(IntegrityError, match=rf"^loans v1 at file://\S+: {rule}"):
        registry.load_model("loans", 1)


def _bytes_read() -> int | None:
    """Bytes this process has read through read(2) so far (Linux), or None where unknown."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line for line in text.splitlines() if line.startswith("rchar:")).split()[1])


def test_a_huge_sparse_model_file_is_refused_without_being_read(
    store: Store, saved_model: Path
) -> None:
    registry, _, source = _registered(store, saved_model)
    body = source / "logistic.json"
    with body.open("r+b") as handle:
        handle.truncate(2**31)
    before = _bytes_read()
    with pytest.raises(
        IntegrityError,
        match=r"\['logistic\.json \(2147483648 bytes\)'\] exceed the limit of "
        r"1073741824 bytes \(1 GiB, MAX_FILE_BYTES\) per model file; "
        r"refused before reading",
    ):
        registry.load_model("loans", 1)
    after = _bytes_read()
    if before is not None and after is not None:
        assert after - before < 2**26  # far less than the 2 GiB file: it was never read


def test_a_clean_version_loads_with_identical_probabilities(
    store: Store, saved_model: Path
) -> None:
    registry, info, _ = _registered(store, saved_model)
    model, loaded_info = registry.load_model("loans", 1)
    original = KeelModel.load(
        saved_model, expected_sha256=sha256_bytes((saved_model / MANIFEST).read_bytes())
    )
    frame = make_loans(300, seed=5)
    assert loaded_info == info
    assert np.array_equal(model.predict_proba(frame), original.predict_proba(frame))
    assert model.threshold == original.threshold == 0.5


def _runs_uri_version(registry: Registry, info: VersionInfo) -> VersionInfo:
    """Version 2: the same run's files, registered by a ``runs:/`` URI.

    They are listed and downloaded through MLflow.
    """
    created = registry._client.create_model_version(
        "loans",
        source=f"runs:/{info.run_id}/model",
        run_id=info.run_id,
        tags={TAG: info.tag("model_sha256") or ""},
    )
    return registry.version("loans", int(created.version))


def test_a_version_listed_through_mlflow_loads_and_is_refused_with_an_extra_file(
    store: Store, saved_model: Path
) -> None:
    registry, info, source = _registered(store, saved_model)
    by_runs_uri = _runs_uri_version(registry, info)
    assert by_runs_uri.source.startswith("runs:/")
    model, _ = registry.load_model("loans", by_runs_uri.version)
    frame = make_loans(100, seed=6)
    by_file_uri, _ = registry.load_model("loans", 1)
    assert np.array_equal(model.predict_proba(frame), by_file_uri.predict_proba(frame))

    (source / ".hidden").write_text("x")
    with pytest.raises(
        IntegrityError, match=r"loans v2 at runs:/.*unexpected entries \['\.hidden'\]"
    ):
        registry.load_model("loans", by_runs_uri.version)
