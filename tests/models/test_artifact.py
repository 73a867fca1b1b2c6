"""Tests for keel.models.artifact, logistic and gbdt: round trips, integrity checks, references."""

from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.errors import IntegrityError
from keel.models.artifact import MANIFEST, KeelModel, looks_like_pickle, sha256_bytes
from keel.models.gbdt import LightGBMScorer
from keel.models.logistic import LogisticScorer, fit_logistic
from keel.models.preprocess import Preprocessor
from keel.spec import ProjectSpec, parse_spec
from keel.training.tuning import Matrices, fit_family

FEATURES = ["x1", "x2", "grade"]
PARAMS = {
    "logistic": {"C": 0.5, "max_iter": 1000},
    "lightgbm": {
        "num_leaves": 8,
        "learning_rate": 0.1,
        "min_child_samples": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "lambda_l2": 1.0,
    },
}
BODY = {"logistic": "logistic.json", "lightgbm": "lightgbm.txt"}


def _spec() -> ProjectSpec:
    return parse_spec(
        {
            "project": "artifact-test",
            "data": {"source": "unused.csv"},
            "contract": {
                "columns": {
                    "x1": {"dtype": "float", "nullable": True},
                    "x2": {"dtype": "float"},
                    "grade": {"dtype": "str"},
                    "y": {"dtype": "int"},
                }
            },
            "target": {"column": "y"},
            "features": {"categorical": ["grade"]},
            "models": {"lightgbm": {"max_rounds": 60, "early_stopping_rounds": 10}},
            "tuning": {"threads": 1},
        }
    )


def _frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    grade = rng.choice(["a", "b", "c", "d"], size=n)
    bump = pd.Series(grade).map({"a": -1.0, "b": 0.0, "c": 0.5, "d": 1.5}).to_numpy()
    p = 1 / (1 + np.exp(-(1.2 * x1 - 0.8 * x2 + bump)))
    y = (rng.random(n) < p).astype(int)
    x1[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "grade": grade, "y": y})


def _model(family: str) -> tuple[KeelModel, pd.DataFrame]:
    """A fitted model of ``family`` and the held-out rows to score."""
    frame = _frame()
    train, valid, held_out = frame.iloc[:800], frame.iloc[800:1000], frame.iloc[1000:]
    pre = Preprocessor(FEATURES, ["grade"]).fit(train)
    data = Matrices(
        X_train=pre.transform(train),
        y_train=train["y"].to_numpy(),
        X_valid=pre.transform(valid),
        y_valid=valid["y"].to_numpy(),
        categorical=pre.categorical_indices(),
        n_categories={2: len(pre.categories_["grade"])},
    )
    scorer = fit_family(family, PARAMS[family], data, _spec(), features=FEATURES)
    model = KeelModel(
        pre, scorer, target="y", positive=1, threshold=0.3, metadata={"project": "artifact-test"}
    )
    return model, held_out.reset_index(drop=True)


def _load_as_is(directory: Path) -> KeelModel:
    """Load with the current manifest's fingerprint, so only the check under test can object."""
    return KeelModel.load(
        directory, expected_sha256=sha256_bytes((directory / MANIFEST).read_bytes())
    )


@pytest.fixture(scope="module", params=["logistic", "lightgbm"])
def fitted(request: pytest.FixtureRequest) -> tuple[KeelModel, pd.DataFrame]:
    return _model(request.param)


def test_save_load_round_trip_gives_identical_predictions(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, frame = fitted
    fingerprint = model.save(tmp_path)
    loaded = KeelModel.load(tmp_path, expected_sha256=fingerprint)
    before, after = model.predict_proba(frame), loaded.predict_proba(frame)
    assert np.array_equal(before, after)
    assert np.all((before > 0) & (before < 1))
    assert len(np.unique(before)) > 10
    assert loaded.family == model.family
    assert loaded.features == FEATURES
    assert loaded.preprocessor.categories_ == model.preprocessor.categories_
    assert (loaded.target, loaded.positive, loaded.threshold) == ("y", 1, 0.3)
    assert loaded.metadata == {"project": "artifact-test"}


def test_saving_twice_gives_byte_identical_files(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    first = model.save(tmp_path / "a")
    second = model.save(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted([MANIFEST, BODY[model.family]])
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first == second


def test_a_loaded_model_saves_back_to_the_same_bytes(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path / "a")
    again = KeelModel.load(tmp_path / "a", expected_sha256=fingerprint).save(tmp_path / "b")
    assert again == fingerprint
    body = BODY[model.family]
    assert (tmp_path / "a" / body).read_bytes() == (tmp_path / "b" / body).read_bytes()


def test_save_returns_the_manifest_sha256_which_records_the_body_hash(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    manifest_raw = (tmp_path / MANIFEST).read_bytes()
    assert fingerprint == hashlib.sha256(manifest_raw).hexdigest()
    body = BODY[model.family]
    manifest = json.loads(manifest_raw)
    assert manifest["family"] == model.family
    assert manifest["files"] == {body: hashlib.sha256((tmp_path / body).read_bytes()).hexdigest()}


def _tamper(path: Path, family: str) -> None:
    text = path.read_text(encoding="utf-8")
    if family == "lightgbm":
        start = text.index("leaf_value=") + len("leaf_value=")
        changed = text[:start] + "9" + text[start:]  # one more digit in the first leaf value
    else:
        body = json.loads(text)
        body["intercept"] += 0.25
        changed = json.dumps(body, indent=1, sort_keys=True)
    assert changed != text
    path.write_text(changed, encoding="utf-8")


def test_tampered_body_is_refused_naming_the_file_while_the_untouched_copy_loads(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, frame = fitted
    body = BODY[model.family]
    fingerprint = model.save(tmp_path / "good")
    model.save(tmp_path / "bad")
    _tamper(tmp_path / "bad" / body, model.family)
    with pytest.raises(IntegrityError, match=rf"bad/{body}: sha256 .* does not match"):
        KeelModel.load(tmp_path / "bad", expected_sha256=fingerprint)
    good = KeelModel.load(tmp_path / "good", expected_sha256=fingerprint)
    assert np.array_equal(good.predict_proba(frame), model.predict_proba(frame))


def test_wrong_expected_sha256_is_refused_and_the_right_one_loads(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    with pytest.raises(IntegrityError, match=r"does not match the registered 0{64}"):
        KeelModel.load(tmp_path, expected_sha256="0" * 64)
    assert KeelModel.load(tmp_path, expected_sha256=fingerprint).family == model.family


def test_edited_manifest_is_caught_by_the_registered_fingerprint(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    manifest["threshold"] = 0.9
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"model was changed after registration"):
        KeelModel.load(tmp_path, expected_sha256=fingerprint)


def _disguise_pickle(directory: Path, name: str, protocol: int) -> None:
    """Put pickle bytes under ``name`` and fix the manifest so only the pickle check can object."""
    raw = pickle.dumps({"booster": "not a model", "numbers": list(range(5))}, protocol=protocol)
    (directory / name).write_bytes(raw)
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][name] = sha256_bytes(raw)
    (directory / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_disguised_as_the_model_body_is_refused(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path, protocol: int
) -> None:
    model, _ = fitted
    body = BODY[model.family]
    model.save(tmp_path)
    _disguise_pickle(tmp_path, body, protocol)
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["files"][body] == sha256_bytes((tmp_path / body).read_bytes())
    with pytest.raises(IntegrityError, match=rf"{body} holds pickle bytes"):
        _load_as_is(tmp_path)


def test_pickle_as_the_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_bytes(pickle.dumps({"format": "keel-model/1"}))
    with pytest.raises(IntegrityError, match=r"model\.json holds pickle bytes"):
        _load_as_is(tmp_path)


def test_missing_body_file_is_refused(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    (tmp_path / BODY[model.family]).unlink()
    with pytest.raises(IntegrityError, match=rf"model file .*{BODY[model.family]} is missing"):
        KeelModel.load(tmp_path, expected_sha256=fingerprint)


def test_manifest_of_another_format_is_refused(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    model.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text(encoding="utf-8"))
    manifest["family"] = "random_forest"
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"family 'random_forest' is not a Keel model"):
        _load_as_is(tmp_path)


def test_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("format: keel-model/1\n", encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"model\.json is not JSON"):
        _load_as_is(tmp_path)


def test_expected_sha256_is_a_required_keyword_and_must_be_a_sha256(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    with pytest.raises(TypeError, match="expected_sha256"):
        KeelModel.load(tmp_path)  # type: ignore[call-arg]
    files = model.files()
    with pytest.raises(TypeError, match="expected_sha256"):
        KeelModel.from_files(files[MANIFEST], files.__getitem__, names=files.keys())  # type: ignore[call-arg]
    for wrong in ["", "None", fingerprint[:-1], fingerprint.upper(), None]:
        with pytest.raises(
            IntegrityError, match=r"is not 64 lowercase hex digits; the model cannot be verified"
        ):
            KeelModel.load(tmp_path, expected_sha256=wrong)  # type: ignore[arg-type]


def _other_body(family: str) -> str:
    return next(name for name in BODY.values() if name != BODY[family])


@pytest.mark.parametrize("extra", ["notes.txt", ".hidden", "folder", "other-body", "symlink"])
def test_a_folder_holding_anything_but_the_two_files_is_refused_naming_it(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path, extra: str
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path)
    if extra == "folder":
        (tmp_path / "folder").mkdir()
        expected = r"unexpected entries \['folder/'\]"
    elif extra == "other-body":
        (tmp_path / _other_body(model.family)).write_text("{}")
        expected = (
            rf"unexpected entries \['{_other_body(model.family)}'\]; "
            rf"a {model.family} model holds only"
        )
    elif extra == "symlink":
        (tmp_path / "symlink").symlink_to(tmp_path / MANIFEST)
        expected = r"\['symlink'\] are symbolic links"
    else:
        (tmp_path / extra).write_text("anything")
        expected = rf"unexpected entries \['{extra}'\]; a Keel model folder holds only model\.json"
    with pytest.raises(IntegrityError, match=expected):
        KeelModel.load(tmp_path, expected_sha256=fingerprint)


def test_a_symlinked_manifest_is_refused(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path
) -> None:
    model, _ = fitted
    fingerprint = model.save(tmp_path / "real")
    (tmp_path / "linked").mkdir()
    for name in (MANIFEST, BODY[model.family]):
        (tmp_path / "linked" / name).symlink_to(tmp_path / "real" / name)
    with pytest.raises(
        IntegrityError, match=r"are symbolic links; a Keel model folder holds only regular files"
    ):
        KeelModel.load(tmp_path / "linked", expected_sha256=fingerprint)


def test_files_over_the_size_limit_are_refused_when_listed_and_when_read(
    fitted: tuple[KeelModel, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keel.models import artifact

    model, _ = fitted
    fingerprint = model.save(tmp_path)
    biggest = max(tmp_path.iterdir(), key=lambda path: path.stat().st_size)
    size = biggest.stat().st_size
    monkeypatch.setattr(artifact, "MAX_FILE_BYTES", size - 1)
    listed = rf"'{biggest.name} \({size} bytes\)'\]"
    with pytest.raises(IntegrityError, match=rf"{listed} exceed the limit of {size - 1} bytes"):
        KeelModel.load(tmp_path, expected_sha256=fingerprint)
    with pytest.raises(
        IntegrityError, match=rf"{biggest.name} is over the limit of {size - 1} bytes"
    ):
        artifact.read_file(biggest)  # a file that grew after it was listed
    monkeypatch.setattr(artifact, "MAX_FILE_BYTES", size)
    assert artifact.read_file(biggest) == biggest.read_bytes()


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=r"model folder .*nowhere is missing"):
        KeelModel.load(tmp_path / "nowhere", expected_sha256="0" * 64)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_looks_like_pickle_recognises_pickle_protocols_2_to_5(protocol: int) -> None:
    assert looks_like_pickle(pickle.dumps([1, 2, 3], protocol=protocol))


def test_looks_like_pickle_recognises_zlib_compressed_pickles() -> None:
    raw = pickle.dumps({"a": 1})
    assert looks_like_pickle(zlib.compress(raw))
    assert looks_like_pickle(zlib.compress(raw, 9))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"family": "logistic", "coef": [1.0]}',
        b"tree\nversion=v4\nnum_class=1\n",
        "plain text with unicode \u00e9".encode(),
        b"",
        b"\x80",
        b"\x80\x06",
    ],
)
def test_looks_like_pickle_is_false_for_json_and_text(raw: bytes) -> None:
    assert not looks_like_pickle(raw)


def test_saved_bodies_are_not_pickles(fitted: tuple[KeelModel, pd.DataFrame]) -> None:
    model, _ = fitted
    for raw in model.files().values():
        assert not looks_like_pickle(raw)


def test_logistic_body_that_is_not_a_model_is_refused() -> None:
    with pytest.raises(IntegrityError, match=r"logistic\.json is not a Keel logistic model"):
        LogisticScorer.from_bytes(b'{"family": "logistic"}')


def test_lightgbm_body_that_is_not_a_model_is_refused() -> None:
    with pytest.raises(IntegrityError, match=r"lightgbm\.txt is not a LightGBM text model"):
        LightGBMScorer.from_bytes(b"\xff\xfe not utf-8")


def test_lightgbm_predicts_rows_with_missing_values_and_unseen_categories() -> None:
    model, frame = _model("lightgbm")
    rows = frame.head(4).copy()
    rows["x1"] = np.nan
    rows["grade"] = ["a", "zz", None, "d"]
    p = model.predict_proba(rows)
    assert p.shape == (4,)
    assert np.all(np.isfinite(p))


def _categorical_data(seed: int = 3) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Column 0 numeric with NaN, 1 categorical codes (0-3, some NaN), 2 constant, 3 numeric."""
    rng = np.random.default_rng(seed)
    n = 600
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 4, size=n).astype(float),
            np.full(n, 7.0),
            rng.normal(2.0, 3.0, size=n),
        ]
    )
    margin = X[:, 0] + np.array([-1.0, 0.0, 1.0, 2.0])[X[:, 1].astype(int)] - 0.3 * X[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    X[rng.random(n) < 0.15, 0] = np.nan
    X[rng.random(n) < 0.05, 1] = np.nan
    return X, y, {1: 4}


def test_logistic_fits_a_column_missing_in_every_training_row() -> None:
    X, y, n_categories = _categorical_data()
    X[:, 3] = np.nan
    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories=n_categories, seed=0)
    assert scorer.fill[3] == 0.0
    assert np.all(np.isfinite(scorer.probability(X)))


def test_logistic_json_round_trip_is_exact() -> None:
    X, y, n_categories = _categorical_data()
    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories=n_categories, seed=0)
    again = LogisticScorer.from_bytes(scorer.to_bytes())
    assert again.n_categories == {1: 4}
    np.testing.assert_array_equal(again.coef, scorer.coef)
    assert again.intercept == scorer.intercept
    np.testing.assert_array_equal(again.margin(X), scorer.margin(X))
    assert again.to_bytes() == scorer.to_bytes()
