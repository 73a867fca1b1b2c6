"""The card's explanations and reasons, checked against naive computations.

The naive computations run on the version's own test rows.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keel.evaluation.metrics import binary_metrics
from keel.explain.contributions import Contributions
from keel.explain.importance import Dependence, importance
from keel.features.cleaning import target_vector
from keel.lifecycle.run import prepare_data, run_project
from keel.models.artifact import KeelModel
from keel.registry.store import Registry
from keel.spec import ProjectSpec, load_spec
from keel.training.split import split_rows
from keel.training.trainer import train_model
from keel.training.tuning import fit_family

from factories import loans_spec, make_loans, write_project

pytestmark = pytest.mark.slow
TEXTS = {
    "late_payments": "Late payments on record",
    "debt_to_income": "High debt relative to income",
}
PAYLOAD = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Documented:
    """One loans version trained with its card, and its test rows explained by LightGBM itself."""

    card: dict[str, Any]
    html: str
    model: KeelModel
    ids: np.ndarray
    X: np.ndarray
    score: np.ndarray
    contributions: np.ndarray  # LightGBM's own pred_contrib, without the base column


def _run(folder: Path, mlflow_template: Path, raw: dict) -> tuple[Any, Path, Any]:
    """Write the loans project with ``raw`` as its spec into ``folder`` and run it.

    Returns (spec, project dir, result).
    """
    spec_path = write_project(folder / "loans", make_loans(), raw)
    project_dir = spec_path.parent / ".keel"
    project_dir.mkdir()
    shutil.copy(mlflow_template, project_dir / "mlflow.db")
    spec = load_spec(spec_path)
    return spec, project_dir, run_project(spec, project_dir=project_dir, author="ana")


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Documented:
    raw = loans_spec(
        "data.csv",
        tuning={"trials": 2},
        models={"families": ["lightgbm"]},
        reasons={"top_k": 3, "texts": TEXTS},
    )
    spec, project_dir, result = _run(tmp_path_factory.mktemp("card"), mlflow_template, raw)
    model, _ = Registry.for_project(project_dir).load_model("loans", result.version)
    frame = _test_rows(spec)
    X = model.preprocessor.transform(frame)
    phi = model.scorer.booster.predict(X, pred_contrib=True)
    return Documented(
        json.loads(result.card_json.read_text()),
        result.card_html.read_text(),
        model,
        frame["loan_id"].to_numpy(),
        X,
        model.predict_proba(frame),
        phi[:, :-1],
    )


def _test_rows(spec: ProjectSpec) -> Any:
    data = prepare_data(spec)
    y = target_vector(data.frame, spec).to_numpy()
    return data.frame.iloc[split_rows(y, spec.split, seed=spec.seed).test]


def _naive_mean_abs(values: np.ndarray) -> list[float]:
    rows, features = values.shape
    return [sum(abs(float(values[i, j])) for i in range(rows)) / rows for j in range(features)]


def test_importance_is_the_mean_absolute_contribution_largest_first() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0, [0.1, 2.0, 0.5, 1.0], size=(300, 4))
    result = importance(Contributions(["a", "b", "c", "d"], values, 0.2))

    expected = dict(zip("abcd", _naive_mean_abs(values), strict=True))
    assert [item.feature for item in result] == ["b", "d", "c", "a"]
    for item in result:
        assert item.mean_abs == pytest.approx(expected[item.feature], abs=1e-12)
        assert item.share == pytest.approx(
            expected[item.feature] / sum(expected.values()), abs=1e-12
        )
        assert item.mean == pytest.approx(values[:, "abcd".index(item.feature)].mean(), abs=1e-12)


def test_importance_refuses_no_rows() -> None:
    with pytest.raises(ValueError, match="at least one row of contributions, but got none"):
        importance(Contributions(["a"], np.zeros((0, 1)), 0.0))


def test_dependence_bins_cover_every_row_once_and_keep_missing_apart() -> None:
    rng = np.random.default_rng(6)
    values = rng.lognormal(0, 1, 1000)
    values[:7] = np.nan
    contributions = rng.normal(0, 1, 1000)
    bins = Dependence("x", values, contributions, None).bins(max_bins=10)

    assert len(bins) == 11 and bins[-1]["label"] == "missing" and bins[-1]["rows"] == 7
    assert bins[-1]["mean_contribution"] == pytest.approx(contributions[:7].mean())
    assert sum(b["rows"] for b in bins) == 1000
    for low_bin, high_bin in zip(bins[:-2], bins[1:-1], strict=True):
        assert low_bin["high"] < high_bin["low"]
    first = (values >= bins[0]["low"]) & (values <= bins[0]["high"])
    assert bins[0]["mean_contribution"] == pytest.approx(contributions[first].mean())


def test_card_importance_matches_a_naive_mean_over_the_test_rows(documented: Documented) -> None:
    section = documented.card["explanations"]
    expected = dict(
        zip(documented.model.features, _naive_mean_abs(documented.contributions), strict=True)
    )

    assert section["rows"] == len(documented.X)
    assert [item["feature"] for item in section["importance"]] == sorted(
        expected, key=lambda f: -expected[f]
    )
    for item in section["importance"]:
        assert item["mean_abs"] == pytest.approx(expected[item["feature"]], abs=1e-9)
    assert {item["feature"]: item["text"] for item in section["importance"]}[
        "late_payments"
    ] == TEXTS["late_payments"]


def test_card_dependence_bins_of_the_top_features_match_a_naive_group_mean(
    documented: Documented,
) -> None:
    section = documented.card["explanations"]
    features = documented.model.features
    assert [d["feature"] for d in section["dependence"]] == [
        i["feature"] for i in section["importance"][:4]
    ]
    region = next(d for d in section["dependence"] if d["feature"] == "region")
    j = features.index("region")
    categories = documented.model.preprocessor.categories_["region"]
    for row in region["bins"]:
        rows = documented.X[:, j] == categories.index(row["label"])
        assert row["rows"] == rows.sum()
        assert row["mean_contribution"] == pytest.approx(
            documented.contributions[rows, j].mean(), abs=1e-9
        )
    for item in section["dependence"]:
        assert sum(b["rows"] for b in item["bins"]) == len(documented.X)


def _naive_reasons(documented: Documented, row: int, k: int) -> list[str]:
    ranked = sorted(
        range(len(documented.model.features)), key=lambda j: -documented.contributions[row, j]
    )
    return [
        documented.model.features[j] for j in ranked[:k] if documented.contributions[row, j] > 0
    ]


def test_card_reason_frequencies_match_a_naive_count_over_adverse_rows(
    documented: Documented,
) -> None:
    section = documented.card["reasons"]
    adverse = [row for row in range(len(documented.score)) if documented.score[row] >= 0.5]
    given = [_naive_reasons(documented, row, 3) for row in adverse]

    assert section["top_k"] == 3 and section["adverse_rows"] == len(adverse) > 10
    principal = {f["feature"]: f["principal"] for f in section["frequency"]}
    mentioned = {f["feature"]: f["mentioned"] for f in section["frequency"]}
    for feature in documented.model.features:
        assert principal.get(feature, 0) == sum(1 for reasons in given if reasons[:1] == [feature])
        assert mentioned.get(feature, 0) == sum(1 for reasons in given if feature in reasons)


def test_card_worked_examples_tell_what_each_applicant_would_hear(documented: Documented) -> None:
    examples = documented.card["reasons"]["examples"]
    assert len(examples) == 4
    assert examples[0]["probability"] == pytest.approx(documented.score.max())
    assert [e["probability"] for e in examples] == sorted(
        (e["probability"] for e in examples), reverse=True
    )
    for example in examples:
        row = int(np.flatnonzero(documented.ids == example["row"])[0])
        assert example["decision"] == "adverse" and example["probability"] >= 0.5
        assert example["probability"] == pytest.approx(documented.score[row])
        assert [r["feature"] for r in example["reasons"]] == _naive_reasons(documented, row, 3)
        for reason in example["reasons"]:
            j = documented.model.features.index(reason["feature"])
            assert reason["contribution"] == pytest.approx(
                documented.contributions[row, j], abs=1e-9
            )
            assert reason["text"] == documented.model.reason_text(reason["feature"])
        assert list(example["values"]) == documented.model.features
        assert example["values"]["region"] in {"north", "south", "east", "west"}


def test_card_reason_table_flags_features_without_a_spec_text(documented: Documented) -> None:
    texts = {row["feature"]: row for row in documented.card["reasons"]["texts"]}
    assert texts["late_payments"] == {
        "feature": "late_payments",
        "text": TEXTS["late_payments"],
        "source": "spec",
    }
    assert texts["income"]["source"] == "feature name"
    html = documented.html
    assert (
        "3 feature(s) have no reason text in the spec (reasons.texts):\n    income, debt, region."
        in html
    )
    assert TEXTS["debt_to_income"] in html


def test_card_html_embeds_importance_and_four_dependence_plots(documented: Documented) -> None:
    html = documented.html
    section = html[html.find('id="explanations"') : html.find('id="reasons"')]
    assert section.count('src="data:image/png;base64,') == 1 + 4
    for item in documented.card["explanations"]["dependence"]:
        assert f'alt="Dependence plot of {item["feature"]}"' in section
    assert documented.card["lifecycle"]["state"] == "validated"
    assert [row["action"] for row in documented.card["lifecycle"]["history"]] == ["register"]


@dataclass(frozen=True)
class Tuned:
    """One loans version tuned over both families.

    An HTML payload is its description and its purpose.
    """

    spec: ProjectSpec
    card: dict[str, Any]
    html: str


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Tuned:
    raw = loans_spec(
        "data.csv",
        # one split and the best family: this card is about the baseline beside a chosen model
        tuning={"trials": 2, "folds": 1, "selection": "best"},
        description=PAYLOAD,
        model_card={"purpose": PAYLOAD},
    )
    spec, _, result = _run(tmp_path_factory.mktemp("card-both"), mlflow_template, raw)
    return Tuned(spec, json.loads(result.card_json.read_text()), result.card_html.read_text())


def test_card_holds_bootstrap_intervals_around_its_test_metrics(tuned: Tuned) -> None:
    intervals, test = tuned.card["intervals"], tuned.card["metrics"]["test"]
    assert {key: intervals[key] for key in ("method", "level", "rounds", "seed", "rows")} == {
        "method": "stratified percentile bootstrap",
        "level": 0.95,
        "rounds": 1000,
        "seed": tuned.spec.seed,
        "rows": tuned.card["data"]["split"]["test"],
    }
    assert list(intervals["metrics"]) == ["auc", "gini", "ks", "average_precision", "brier"]
    for name, interval in intervals["metrics"].items():
        assert interval["value"] == pytest.approx(test[name], abs=1e-12)
        assert interval["low"] < interval["value"] < interval["high"]
    assert (
        0.02 < intervals["metrics"]["auc"]["high"] - intervals["metrics"]["auc"]["low"] < 0.2
    )  # 400 test rows


def test_card_baseline_is_the_best_logistic_trial_fitted_on_training_rows_and_scored_on_test_rows(
    tuned: Tuned,
) -> None:
    baseline, card = tuned.card["baseline"], tuned.card
    outcome = train_model(
        prepare_data(tuned.spec).frame, tuned.spec
    )  # the same spec and seed: the same run
    assert outcome.family == card["method"]["family"] == "lightgbm" and set(outcome.results) == {
        "lightgbm",
        "logistic",
    }
    assert (
        baseline["params"] == outcome.results["logistic"].best_params
        and baseline["chosen"] is False
    )
    assert baseline["validation"] == {
        "auc": pytest.approx(card["tuning"]["best"]["logistic"], abs=1e-12)
    }
    refit = fit_family(
        "logistic",
        baseline["params"],
        outcome.matrices,
        tuned.spec,
        features=outcome.model.features,
    )
    expected = binary_metrics(outcome.y_test, refit.probability(outcome.X_test))
    assert baseline["test"] == pytest.approx(expected, abs=1e-12)
    difference = baseline["difference"]["auc"]
    assert difference["value"] == pytest.approx(
        card["metrics"]["test"]["auc"] - expected["auc"], abs=1e-12
    )
    assert difference["low"] <= difference["value"] <= difference["high"]
    assert baseline["intervals"]["auc"]["value"] == pytest.approx(expected["auc"], abs=1e-12)
    assert card["champion"] is None and card["comparison"] is None


def test_card_html_opens_with_the_decision_summary_and_shows_spec_text_escaped(
    tuned: Tuned,
) -> None:
    html, card = tuned.html, tuned.card
    first = html.find("<section")
    assert html.find("</h1>") < first == html.find('<section id="decision-summary"')
    summary = html[first : html.find("</section>", first)]
    auc = card["intervals"]["metrics"]["auc"]
    assert (
        f"<strong>{auc['value']:.4f}</strong>" in summary
        and f"{auc['low']:.4f} to {auc['high']:.4f}" in summary
    )
    assert f"against {card['baseline']['test']['auc']:.4f} for the logistic baseline" in summary
    assert f"{card['baseline']['difference']['auc']['value']:+.4f}" in summary
    assert (
        '<span class="status pass">pass</span></td>\n        <td class="mono">min_auc</td>'
        in summary
    )
    assert "<script" not in html
    assert "<dt>Description</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>" in html
    assert "<dt>Purpose</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>" in html
    tuning = html[html.find('<section id="tuning"') : html.find('<section id="performance"')]
    trials = tuning.find("<table", tuning.find("Trials (best first)"))
    assert 0 < tuning.find("<details") < trials < tuning.find("</details>")


def test_a_card_tuned_on_one_family_says_it_has_no_baseline(documented: Documented) -> None:
    assert documented.card["baseline"] is None and documented.card["intervals"]["rows"] == len(
        documented.X
    )
    assert "— (no logistic baseline: the run tuned lightgbm)" in documented.html
