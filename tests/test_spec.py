"""The project spec: key-path errors with suggestions, value rules, cross-references.

Also loading and dumping.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from keel.errors import SpecError
from keel.spec import ProjectSpec, dump_spec, format_validation_error, load_spec, parse_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "credit_default" / "keel.yaml"


def _raw() -> dict[str, Any]:
    """A small valid spec in the shape of the credit example: id, target, protected, time."""
    return {
        "project": "credit",
        "data": {"source": "data/clients.csv", "id_column": "ID", "time_column": "opened"},
        "contract": {
            "columns": {
                "ID": {"dtype": "int", "unique": True},
                "LIMIT_BAL": {"dtype": "int", "min": 1},
                "BILL_AMT1": {"dtype": "int"},
                "PAY_0": {"dtype": "int", "min": -2, "max": 9},
                "SEX": {"dtype": "int", "allowed": [1, 2]},
                "EDUCATION": {"dtype": "int"},
                "opened": {"dtype": "datetime"},
                "default": {"dtype": "int", "allowed": [0, 1]},
            }
        },
        "target": {"column": "default"},
        "protected": ["SEX"],
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    """The base spec with ``value`` set at a dotted key path."""
    raw = copy.deepcopy(_raw())
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


def _error(raw: Any) -> str:
    with pytest.raises(SpecError, match="spec") as info:
        parse_spec(raw)
    return str(info.value)


def test_base_spec_is_valid() -> None:
    spec = parse_spec(_raw())
    assert spec.project == "credit"
    assert spec.target.positive == 1
    assert spec.data.duplicates == "error"


@pytest.mark.parametrize(
    ("path", "key", "meant", "accepted"),
    [
        (
            "tuning.trails",
            "trails",
            "trials",
            "trials, folds, selection, refit, timeout_seconds, metric, pruning, threads, storage",
        ),
        (
            "data.sourc",
            "sourc",
            "source",
            "source, format, id_column, time_column, duplicates, recode",
        ),
        ("feautres", "feautres", "features", "project, description, seed, data, contract, target"),
        (
            "contract.columns.PAY_0.nullabel",
            "nullabel",
            "nullable",
            "dtype, nullable, unique, min, max",
        ),
        ("models.lightgbm.num_leavs", "num_leavs", "num_leaves", "num_leaves, learning_rate"),
    ],
)
def test_typo_names_full_key_path_suggestion_and_accepted_keys(
    path: str, key: str, meant: str, accepted: str
) -> None:
    message = _error(_with(path, 3))
    assert f"- {path}: unknown key '{key}'." in message
    assert f"Did you mean '{meant}'?" in message
    assert f"Accepted keys: {accepted}" in message
    assert "(1 problem(s))" in message


def test_unknown_key_far_from_any_gives_no_suggestion_but_lists_keys() -> None:
    message = _error(_with("tuning.zzzzzz", 1))
    assert "tuning.zzzzzz: unknown key 'zzzzzz'." in message
    assert "Did you mean" not in message
    assert "Accepted keys: trials," in message


def test_every_problem_is_reported_at_once() -> None:
    raw = _with("tuning.trails", 3)
    raw["split"] = {"test_size": 0.9}
    message = _error(raw)
    assert "(2 problem(s))" in message
    assert "tuning.trails" in message and "split.test_size" in message


def test_missing_required_key_is_named() -> None:
    raw = _raw()
    del raw["target"]
    assert "- target: required key is missing." in _error(raw)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "contract.columns.PAY_0.dtype",
            "integer",
            "contract.columns.PAY_0.dtype: Input should be "
            "'int', 'float', 'str', 'bool' or 'datetime' (got 'integer')",
        ),
        (
            "contract.columns.PAY_0.min",
            20,
            "contract.columns.PAY_0: `min <= max` must hold, but got min=20.0, max=9.0",
        ),
        (
            "models.lightgbm.num_leaves",
            {"low": 64, "high": 8},
            "models.lightgbm.num_leaves: `low <= high` must hold, but got low=64, high=8",
        ),
        (
            "models.logistic.C",
            {"low": 0.0, "high": 1.0, "log": True},
            "models.logistic.C: a log range needs low > 0, but got low=0.0",
        ),
        ("tuning.trials", -3, "tuning.trials: Input should be greater than or equal to 1 (got -3)"),
        ("tuning.trials", 0, "tuning.trials: Input should be greater than or equal to 1 (got 0)"),
        ("split.test_size", 0.5, "split.test_size: Input should be less than 0.5 (got 0.5)"),
        ("split.test_size", 0, "split.test_size: Input should be greater than 0 (got 0)"),
        ("target.threshold", 1.0, "target.threshold: Input should be less than 1 (got 1.0)"),
        (
            "data.duplicates",
            "ignore",
            "data.duplicates: Input should be 'keep', 'drop' or 'error' (got 'ignore')",
        ),
        ("project", "1credit", "project: String should match pattern"),
    ],
)
def test_bad_values_name_key_rule_and_value(path: str, value: Any, expected: str) -> None:
    assert expected in _error(_with(path, value))


def test_min_max_only_for_numeric_columns() -> None:
    message = _error(_with("contract.columns.opened.min", 1))
    assert (
        "contract.columns.opened: min/max apply to int or float columns, not dtype 'datetime'"
        in message
    )


def test_split_dates_must_be_ordered_and_only_for_time_split() -> None:
    late, early = "2024-06-01", "2024-01-01"
    assert "`validation_start < test_start` must hold" in _error(
        _with("split", {"method": "time", "validation_start": late, "test_start": early})
    )
    assert "give both validation_start and test_start, or neither" in _error(
        _with("split", {"method": "time", "validation_start": early})
    )
    assert "apply only to method 'time'" in _error(
        _with("split", {"validation_start": early, "test_start": late})
    )


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "target.column",
            "defualt",
            "target.column: column 'defualt' is not in contract.columns. Did you mean 'default'?",
        ),
        (
            "protected",
            ["SEX", "EDUCATON"],
            "protected[1]: column 'EDUCATON' is not in contract.columns. Did you mean 'EDUCATION'?",
        ),
        (
            "features.include",
            ["LIMIT_BAL", "PAY_O"],
            "features.include[1]: column 'PAY_O' is not in contract.columns. Did you mean 'PAY_0'?",
        ),
        (
            "features.exclude",
            ["BILL_AMT"],
            "features.exclude[0]: column 'BILL_AMT' is not in contract.columns. "
            "Did you mean 'BILL_AMT1'?",
        ),
        (
            "data.recode",
            {"EDUCATIN": {0: 4}},
            "data.recode.EDUCATIN: column 'EDUCATIN' is not in contract.columns. "
            "Did you mean 'EDUCATION'?",
        ),
        (
            "models.lightgbm.monotone",
            {"LIMIT_BL": -1},
            "models.lightgbm.monotone.LIMIT_BL: column 'LIMIT_BL' is "
            "not in contract.columns. Did you mean 'LIMIT_BAL'?",
        ),
        (
            "features.derived",
            {"util": "BILL_AMT1 / LIMT_BAL"},
            "features.derived.util: column 'LIMT_BAL' is not "
            "in contract.columns. Did you mean 'LIMIT_BAL'?",
        ),
        (
            "data.time_column",
            "opend",
            "data.time_column: column 'opend' is not in contract.columns. Did you mean 'opened'?",
        ),
    ],
)
def test_references_to_unknown_columns_are_refused_with_suggestion(
    path: str, value: Any, expected: str
) -> None:
    assert expected in _error(_with(path, value))


def test_unknown_column_far_from_any_has_no_suggestion() -> None:
    message = _error(_with("target.column", "qqqqqq"))
    assert "target.column: column 'qqqqqq' is not in contract.columns." in message
    assert "Did you mean" not in message


def test_monotone_may_name_a_derived_feature() -> None:
    raw = _with("features.derived", {"util": "BILL_AMT1 / LIMIT_BAL"})
    raw["models"] = {"lightgbm": {"monotone": {"util": 1, "LIMIT_BAL": -1}}}
    assert parse_spec(raw).models.lightgbm.monotone == {"util": 1, "LIMIT_BAL": -1}


def test_protected_attribute_in_features_include_is_refused() -> None:
    message = _error(_with("features.include", ["LIMIT_BAL", "SEX"]))
    assert "features.include: 'SEX' is a protected attribute and never a feature" in message


@pytest.mark.parametrize("column", ["default", "ID", "opened"])
def test_target_id_or_time_in_features_include_is_refused(column: str) -> None:
    message = _error(_with("features.include", ["LIMIT_BAL", column]))
    assert f"features.include: '{column}' is the target, id or time column" in message


@pytest.mark.parametrize("column", ["SEX", "default", "ID", "opened"])
def test_derived_feature_from_protected_target_id_or_time_is_refused(column: str) -> None:
    message = _error(_with("features.derived", {"leak": f"max(LIMIT_BAL, {column}) + 1"}))
    assert (
        f"features.derived.leak: '{column}' is the target, id, time or a protected attribute"
        in message
    )


@pytest.mark.parametrize("name", ["LIMIT_BAL", "2fast", "has space"])
def test_derived_feature_needs_a_new_valid_name(name: str) -> None:
    message = _error(_with("features.derived", {name: "BILL_AMT1 / LIMIT_BAL"}))
    assert f"features.derived.{name}: the feature '{name}' needs a new name" in message


def test_derived_feature_with_bad_expression_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"'BILL_AMT1\.real' uses Attribute"):
        parse_spec(_with("features.derived", {"x": "BILL_AMT1.real"}))


def test_time_split_needs_time_column() -> None:
    raw = _with("split", {"method": "time"})
    del raw["data"]["time_column"]
    assert "split.method 'time' needs data.time_column" in _error(raw)
    raw["data"]["time_column"] = "opened"
    assert parse_spec(raw).split.method == "time"


def test_feature_columns_exclude_reserved_protected_and_excluded_then_derived_follow() -> None:
    raw = _with(
        "features",
        {
            "exclude": ["EDUCATION"],
            "derived": {"util": "BILL_AMT1 / LIMIT_BAL", "late": "PAY_0 > 0"},
        },
    )
    spec = parse_spec(raw)
    assert spec.feature_columns() == ["LIMIT_BAL", "BILL_AMT1", "PAY_0"]
    assert spec.model_features() == ["LIMIT_BAL", "BILL_AMT1", "PAY_0", "util", "late"]


def test_feature_columns_follow_include_order_minus_excluded() -> None:
    raw = _with(
        "features", {"include": ["PAY_0", "EDUCATION", "LIMIT_BAL"], "exclude": ["EDUCATION"]}
    )
    spec = parse_spec(raw)
    assert spec.feature_columns() == ["PAY_0", "LIMIT_BAL"]
    assert spec.model_features() == ["PAY_0", "LIMIT_BAL"]


def test_model_name_defaults_to_project() -> None:
    assert parse_spec(_raw()).model_name() == "credit"
    assert parse_spec(_with("registry.model_name", "pd_model")).model_name() == "pd_model"


def test_spec_is_frozen() -> None:
    spec = parse_spec(_raw())
    with pytest.raises(ValidationError, match="frozen"):
        spec.seed = 7  # type: ignore[misc]


@pytest.mark.parametrize("raw", [None, [1, 2], "project: x"])
def test_non_mapping_is_refused(raw: Any) -> None:
    with pytest.raises(SpecError, match=r"a spec is a YAML mapping of keys, got"):
        parse_spec(raw)


def test_format_validation_error_uses_source_name() -> None:
    with pytest.raises(ValidationError, match="trails") as info:
        ProjectSpec.model_validate(_with("tuning.trails", 3))
    text = format_validation_error(info.value, "my/keel.yaml")
    assert text.splitlines()[0] == "my/keel.yaml: the spec is not valid (1 problem(s)):"
    assert text.splitlines()[1].startswith(
        "  - tuning.trails: unknown key 'trails'. Did you mean 'trials'?"
    )


def _write(folder: Path, raw: Any) -> Path:
    path = folder / "keel.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_load_spec_resolves_relative_source_against_spec_folder(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    spec = load_spec(_write(folder, _raw()))
    assert spec.data.source == str((folder / "data" / "clients.csv").resolve())


@pytest.mark.parametrize(
    "source", ["s3://bank-risk/credit/clients.parquet", "hdfs://nn:8020/x.csv"]
)
def test_load_spec_leaves_urls_alone(tmp_path: Path, source: str) -> None:
    spec = load_spec(_write(tmp_path, _with("data.source", source)))
    assert spec.data.source == source


def test_load_spec_leaves_absolute_paths_alone(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, _with("data.source", "/srv/data/clients.csv")))
    assert spec.data.source == "/srv/data/clients.csv"


def test_parse_spec_without_base_dir_keeps_relative_source() -> None:
    assert parse_spec(_raw()).data.source == "data/clients.csv"


def test_load_spec_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=re.escape(f"spec file '{missing}' does not exist")):
        load_spec(missing)


def test_load_spec_directory_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist; pass the path of a keel.yaml"):
        load_spec(tmp_path)


def test_load_spec_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "keel.yaml"
    path.write_text("project: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match=re.escape(f"{path}: not valid YAML")):
        load_spec(path)


def test_load_spec_errors_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _with("tuning.trails", 3))
    with pytest.raises(SpecError, match=re.escape(f"{path}: the spec is not valid")):
        load_spec(path)


def test_dump_spec_round_trips_to_an_equal_spec() -> None:
    raw = _with(
        "split",
        {"method": "time", "validation_start": "2024-01-01", "test_start": "2024-06-01T12:00:00"},
    )
    raw["data"]["recode"] = {"EDUCATION": {0: 4, 5: 4}, "PAY_0": {-2: -1}}
    raw["data"]["duplicates"] = "drop"
    raw["features"] = {"derived": {"util": "BILL_AMT1 / LIMIT_BAL"}}
    raw["models"] = {"lightgbm": {"monotone": {"util": 1}}}
    raw["gates"] = {"min_auc": 0.7}
    spec = parse_spec(raw)
    assert spec.split.test_start == dt.datetime(2024, 6, 1, 12)
    text = dump_spec(spec)
    again = parse_spec(yaml.safe_load(text))
    assert again == spec
    assert again.data.recode == {"EDUCATION": {0: 4, 5: 4}, "PAY_0": {-2: -1}}
    assert "trials: 30" in text  # defaults are written out


def test_example_credit_spec_loads_and_round_trips() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.project == "credit_default"
    assert spec.data.source == str(EXAMPLE.parent / "data" / "UCI_Credit_Card.csv")
    assert spec.data.recode == {"EDUCATION": {0: 4, 5: 4, 6: 4}, "MARRIAGE": {0: 3}}
    assert len(spec.contract.columns) == 25
    features = spec.feature_columns()
    assert not {"ID", "default.payment.next.month", "SEX", "AGE", "MARRIAGE", "EDUCATION"} & set(
        features
    )
    assert features[:2] == ["LIMIT_BAL", "PAY_0"]
    assert len(features) == 19
    assert spec.model_features()[19:] == list(spec.features.derived)
    assert parse_spec(yaml.safe_load(dump_spec(spec))) == spec
