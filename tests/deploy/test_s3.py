"""`s3://` end to end against a local S3-compatible server (moto on loopback, no network).

One server and one trained, approved model per module: `keel run` reads its data from the
bucket, MLflow keeps the run's artifacts there, the audit checkpoints go there, and `keel score`
reads and writes there with exactly the numbers it gives on local files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keel.cli.main import app
from keel.errors import IntegrityError, RegistryError, SpecError
from keel.registry.project import ProjectStore
from keel.registry.signing import CheckpointStore
from keel.serving.loader import load_alias
from keel.spec import load_spec, parse_spec

from factories import loans_spec, make_loans
from people import People, crown, enrol
from s3_server import MotoS3, forget_connections

pytestmark = pytest.mark.slow

BUCKET = "keel-data"
CHECKPOINTS = f"s3://{BUCKET}/audit"
ARTIFACTS = f"s3://{BUCKET}/mlflow/loans"


@dataclass(frozen=True)
class Project:
    """A project trained from the bucket, its version 1 crowned champion."""

    spec: Path
    folder: Path
    rows: pd.DataFrame
    people: People


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    """The moto server, with the standard AWS variables pointing everything at it."""
    server = MotoS3.start()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "MLFLOW_S3_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in server.environment().items():
            patch.setenv(name, value)
        patch.setenv("KEEL_AUDIT_CHECKPOINTS", CHECKPOINTS)  # the governance stores people opens
        forget_connections()
        server.client().create_bucket(Bucket=BUCKET)
        yield server
        forget_connections()
    server.stop()


@pytest.fixture(scope="module")
def project(s3: MotoS3, tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Project:
    """`keel run` on s3://keel-data/loans.parquet, artifacts and checkpoints in the bucket."""
    from mlflow import MlflowClient

    rows = make_loans(rows=1200, seed=3)
    put(s3, "loans.parquet", parquet_bytes(rows))
    put(s3, "loans.csv", rows.to_csv(index=False).encode())
    folder = tmp_path_factory.mktemp("s3-project")
    raw = loans_spec(
        f"s3://{BUCKET}/loans.parquet",
        tuning={"trials": 1},
        models={"families": ["logistic"]},  # seconds, not a minute
        registry={"checkpoints": CHECKPOINTS},
    )
    spec = folder / "keel.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    project_dir = folder / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")
    MlflowClient(f"sqlite:///{project_dir / 'mlflow.db'}").create_experiment(
        "loans", artifact_location=ARTIFACTS
    )  # as `mlflow experiments create -n loans -l s3://...` does
    people = enrol(project_dir)

    ran = CliRunner().invoke(
        app,
        ["run", str(spec), "--project-dir", str(project_dir), "--quiet"],
        env={"KEEL_TOKEN": people.tokens["ana"]},
    )

    assert ran.exit_code == 0, ran.output
    crown(people, "loans", 1)
    return Project(spec, project_dir, rows, people)


def put(s3: MotoS3, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=body)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def store_of(project: Project) -> ProjectStore:
    return ProjectStore.of(load_spec(project.spec), project.folder)


def keel(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_keel_run_trains_on_the_bucket_s_bytes_and_records_their_hash(
    s3: MotoS3, project: Project
) -> None:
    body = s3.client().get_object(Bucket=BUCKET, Key="loans.parquet")["Body"].read()

    version = store_of(project).registry().version("loans", 1)

    assert version.tag("data_sha256") == hashlib.sha256(body).hexdigest()


def test_mlflow_artifacts_land_in_the_bucket_and_load_hash_checked(
    s3: MotoS3, project: Project
) -> None:
    version = store_of(project).registry().version("loans", 1)
    prefix = f"mlflow/loans/{version.run_id}/artifacts/"
    keys = s3.keys(BUCKET, prefix)
    model_key = f"{prefix}model/model.json"
    original = s3.client().get_object(Bucket=BUCKET, Key=model_key)["Body"].read()

    served = load_alias(store_of(project).governance(writer=False), "loans")
    put(s3, model_key, original.replace(b'"', b" ", 1) + b" ")  # one changed byte, then more
    try:
        with pytest.raises(IntegrityError, match="sha256"):
            load_alias(store_of(project).governance(writer=False), "loans")
    finally:
        put(s3, model_key, original)

    assert version.source == f"{ARTIFACTS}/{version.run_id}/artifacts/model"
    assert model_key in keys and not (project.folder / "artifacts").exists()
    assert served.version == 1 and served.name == "loans"
    assert hashlib.sha256(original).hexdigest() == version.tag("model_sha256")


@pytest.mark.parametrize("source", ["loans.csv", "loans.parquet"])
def test_batch_scoring_from_and_to_the_bucket_equals_scoring_local_files(
    s3: MotoS3, project: Project, tmp_path: Path, source: str
) -> None:
    local_in = tmp_path / source
    s3.client().download_file(BUCKET, source, str(local_in))
    target = f"s3://{BUCKET}/scored/{source}/out.parquet"
    common = ["score", "--spec", str(project.spec), "--project-dir", str(project.folder)]

    remote = keel(*common, "--input", f"s3://{BUCKET}/{source}", "--output", target)
    local = keel(*common, "--input", str(local_in), "--output", str(tmp_path / "out.parquet"))

    assert remote.exit_code == 0, remote.output
    assert local.exit_code == 0, local.output
    scored = pd.read_parquet(target)
    expected = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(scored, expected, check_exact=True)
    assert len(scored) == len(project.rows) and scored["reasons"].map(json.loads).map(len).max() > 0
    assert s3.keys(BUCKET, f"scored/{source}/") == [f"scored/{source}/out.parquet"]  # no partial


def test_audit_checkpoints_land_in_the_bucket_and_verify(s3: MotoS3, project: Project) -> None:
    store = CheckpointStore(CHECKPOINTS)
    newest = store.newest()
    governance = store_of(project).governance(writer=False)

    verified = keel(
        "audit", "verify", "--spec", str(project.spec), "--project-dir", str(project.folder)
    )

    assert newest is not None and newest.is_valid()
    assert f"audit/{newest.name}" in s3.keys(BUCKET, "audit/")
    rows = governance.audit.rows()
    assert (newest.seq, newest.hash) == (rows[-1].seq, rows[-1].hash)  # the head as it is now
    assert verified.exit_code == 0, verified.output
    assert "audit log intact" in verified.output
    assert store.write(newest) is False  # put-if-absent: a checkpoint is never replaced
    assert store.newest() == newest


def test_a_wrong_endpoint_is_a_data_error_naming_the_url(
    s3: MotoS3, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postgres_server import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    forget_connections()
    try:
        checked = keel("validate", str(project.spec))
    finally:
        forget_connections()

    assert checked.exit_code == 3, checked.output
    assert "DataError" in checked.output and "Traceback" not in checked.output
    assert f"s3://{BUCKET}/loans.parquet" in checked.output
    assert "AWS_ENDPOINT_URL" in checked.output


def test_model_files_behind_a_wrong_endpoint_are_a_registry_error_naming_them(
    s3: MotoS3, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postgres_server import free_port

    registry = ProjectStore.of(load_spec(project.spec), project.folder).registry()
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL", nowhere)
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", nowhere)  # a key of MLflow's cached client
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    forget_connections()
    try:
        with pytest.raises(RegistryError, match=rf"s3://{BUCKET}/mlflow/.*AWS_ENDPOINT_URL"):
            registry.load_model("loans", 1)
    finally:
        forget_connections()


def test_a_missing_bucket_fails_with_its_url_and_leaves_no_output(
    s3: MotoS3, project: Project
) -> None:
    before = s3.keys(BUCKET)
    common = ["score", "--spec", str(project.spec), "--project-dir", str(project.folder)]

    no_output_bucket = keel(
        *common, "--input", f"s3://{BUCKET}/loans.csv", "--output", "s3://no-such-bucket/o.parquet"
    )
    no_input_bucket = keel(
        *common,
        "--input",
        "s3://no-such-bucket/loans.csv",
        "--output",
        f"s3://{BUCKET}/failed/o.parquet",
    )

    for failed, url in [
        (no_output_bucket, "s3://no-such-bucket/o.parquet"),
        (no_input_bucket, "s3://no-such-bucket/loans.csv"),
    ]:
        assert failed.exit_code == 3, failed.output
        assert "DataError" in failed.output and "Traceback" not in failed.output
        assert url in failed.output.replace("\n", "")
    assert s3.keys(BUCKET) == before  # no output and no partial object


def test_the_spec_s_artifact_root_puts_a_new_experiment_s_artifacts_in_the_bucket(
    s3: MotoS3, project: Project, tmp_path: Path
) -> None:
    raw = {**yaml.safe_load(project.spec.read_text()), "project": "loans2"}
    raw["registry"] = {**raw["registry"], "artifact_root": f"s3://{BUCKET}/runs/"}
    spec = tmp_path / "keel.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    registry = ProjectStore.of(load_spec(spec), project.folder).registry()

    run_id = registry.start_run("loans2", "a run", {})
    registry.log_text(run_id, "{}", "model/notes.json")
    registry.finish_run(run_id)

    assert s3.keys(BUCKET, "runs/") == [f"runs/loans2/{run_id}/artifacts/model/notes.json"]
    with pytest.raises(SpecError, match="artifact_root"):
        ProjectStore.of(
            parse_spec({**raw, "registry": {"artifact_root": "relative/folder"}}), project.folder
        )
