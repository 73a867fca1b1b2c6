"""Attacks Keel already withstood when issue 15 was filed, kept here so they stay withstood.

Each test is an attack through a public entry point (the scoring API, the governance API,
the spec loader, the model loader), with the effect the attacker wanted checked to be absent.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.errors import IntegrityError, SpecError
from keel.models.artifact import MANIFEST, KeelModel, sha256_bytes
from keel.reports.monitoring import render_monitoring_report
from keel.server.api import create_governance_app
from keel.serving.app import create_app
from keel.serving.predictions import PredictionLog
from keel.serving.served import ServedModel
from keel.spec import load_spec

from factories import small_engine
from people import enrol

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def engine() -> ServedModel:
    return small_engine()


@pytest.fixture
def scoring(engine: ServedModel, tmp_path: Path):
    log = PredictionLog(tmp_path / "predictions.db")
    yield (
        TestClient(
            create_app(engine, prediction_log=log, api_key="s3cret-key", reload=lambda: engine)
        ),
        log,
    )
    log.close()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_non_finite_numbers_are_refused_and_never_logged(scoring, number: str) -> None:
    client, log = scoring
    one = json.dumps(RECORD).replace("20000", number)
    assert client.post("/v1/score", content=one, headers=JSON).status_code == 422
    assert (
        client.post("/v1/score/batch", content=f'{{"records": [{one}]}}', headers=JSON).status_code
        == 422
    )
    assert log.rows() == []


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_refusal_not_a_crash(scoring, tmp_path: Path, depth: int) -> None:
    client, log = scoring
    nested = "[" * depth + "]" * depth
    for path, body in (
        ("/v1/score", nested),
        ("/v1/score/batch", f'{{"records": {nested}}}'),
        ("/v1/score", f'{{"income": {nested}}}'),
    ):
        assert client.post(path, content=body, headers=JSON).status_code in (400, 422)
    assert log.rows() == []
    people = enrol(tmp_path / ".keel")
    governance = TestClient(create_governance_app(people.service))
    answer = governance.post(
        "/api/v1/models/loans/versions/1/approve",
        content=f'{{"note": {nested}}}',
        headers={**JSON, "authorization": f"Bearer {people.tokens['vera']}"},
    )
    assert answer.status_code in (400, 422)


@pytest.mark.parametrize(
    "key",
    [
        "S3CRET-KEY",
        "s3cret-key ",
        " s3cret-key",
        "s3cret-ke",
        "s3cret-keyy",
        "s3cret-key\t",
        "ѕ3cret-key",
        "s3cret-key,s3cret-key",
        "",
        "null",
        "*",
    ],
)
def test_only_the_exact_api_key_opens_the_admin_routes(scoring, key: str) -> None:
    client, _ = scoring
    assert client.post("/admin/reload", headers={"x-api-key": key.encode("utf-8")}).status_code in (
        401,
        403,
    )
    assert client.post("/admin/reload", headers={"x-api-key": "s3cret-key"}).status_code == 200


def _spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keel.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _bomb(levels: int = 10) -> str:
    """YAML anchors nine wide and ``levels`` deep: 9**levels strings once expanded.

    The "billion laughs" attack.
    """
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "where",
    [
        "description: *l9",
        "protected: *l9",
        "data: {source: x.csv, recode: {a: *l9}}",
        "explain: {bands: {debt: *l9}}",
        "contract: *l9",
    ],
)
def test_a_yaml_bomb_is_refused_at_once_with_a_short_message(tmp_path: Path, where: str) -> None:
    path = _spec_file(tmp_path, f"{_bomb()}\nproject: loans\n{where}\n")
    start = time.monotonic()
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    assert time.monotonic() - start < 2 and len(str(refused.value)) < 5_000


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_python_tags_in_a_spec_are_refused_and_never_run(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    path = _spec_file(tmp_path, f"project: {tag} ['touch {marker}']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    assert not marker.exists()


class _Payload:
    """Unpickling this creates a file: the proof that a loader ran it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_a_pickle_with_a_payload_is_refused_and_never_run_even_with_matching_hashes(
    engine, tmp_path: Path
) -> None:
    folder, marker = tmp_path / "model", tmp_path / "pwned"
    engine.model.save(folder)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    [body] = manifest["files"]
    raw = pickle.dumps(_Payload(marker))
    (folder / body).write_bytes(raw)
    manifest["files"][body] = sha256_bytes(
        raw
    )  # an attacker who can register also controls the hashes
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IntegrityError, match="pickle"):
        KeelModel.load(folder, expected_sha256=sha256_bytes((folder / MANIFEST).read_bytes()))
    assert not marker.exists()


def test_html_in_a_monitoring_report_renders_as_text() -> None:
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    alert = {
        "window": "2024-01-01",
        "severity": "critical",
        "kind": "drift",
        "subject": payload,
        "message": payload,
        "value": 0.4,
        "threshold": 0.2,
    }
    html = render_monitoring_report(
        {
            "model": payload,
            "as_of": "2024-01-01",
            "window": "day",
            "reference": {},
            "windows": [],
            "alerts": [alert],
        }
    )
    assert "<img src=x" not in html and "<script>" not in html
    assert (
        html.count("&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") >= 3
    )  # title, heading, subject, message
