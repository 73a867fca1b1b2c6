"""The logistic family on messy tables: missing flags, winsorizing, signed logs, old files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from keel.errors import IntegrityError
from keel.models.logistic import LogisticScorer, fit_logistic
from keel.models.transforms import fit_transforms, signed_log, tail_weight

# Written by the logistic family before the transforms existed (commit 98e35b3), from 60 rows:
# a numeric column with NaN, a 3-level categorical, a log-normal column.
OLD_FILE = b"""{
 "center": [
  -0.1018718647533847,
  0.35,
  0.3,
  0.35,
  66.97465334607006
 ],
 "coef": [
  0.50252517526311,
  -0.4330503292489519,
  -0.2655921327330724,
  0.6882229965271673,
  0.13503957642942813
 ],
 "family": "logistic",
 "fill": [
  -0.13656633397682774,
  1.0,
  17.476116269145045
 ],
 "intercept": -0.025256304499671197,
 "n_categories": {
  "1": 3
 },
 "scale": [
  0.8397062482153206,
  0.47696960070847283,
  0.45825756949558394,
  0.47696960070847283,
  144.4198627633819
 ]
}"""
OLD_ROWS = np.array([[np.nan, 0.0, 5.0], [1.5, 2.0, 1e6], [-0.3, np.nan, 20.0], [0.1, 1.0, np.nan]])
OLD_MARGINS = [-1.0252635084454036, 937.3488004598094, -0.20112504921419944, -0.5436731363347672]


def _messy(rows: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Column 0: log-normal amount (risk rises with its log); 1: normal, missing for 30% of
    rows, where risk is high (an 'unknown' code turned into NaN); 2: a rare 0/1 flag (0.3%);
    3: a two-sided heavy tail (Student t, 2 dof)."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(6, 2, rows)
    score = rng.normal(size=rows)
    unknown = rng.random(rows) < 0.3
    flag = (rng.random(rows) < 0.003).astype(float)
    flow = rng.standard_t(2, rows) * 100
    logit = 0.6 * (np.log(amount) - 6) - score + 1.5 * unknown + 2 * flag + 0.3 * signed_log(flow)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    X = np.column_stack([amount, np.where(unknown, np.nan, score), flag, flow])
    return X, y


def _cv_auc(fit: object, X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import StratifiedKFold

    aucs = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        aucs.append(roc_auc_score(y[test], fit(X[train], y[train]).probability(X[test])))  # type: ignore[operator]
    return float(np.mean(aucs))


def test_a_feature_missing_in_training_gets_a_flag_that_carries_its_own_weight() -> None:
    X, y = _messy()
    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories={}, seed=0)

    assert scorer.transforms is not None and scorer.transforms.flagged == [1]
    assert scorer.feature_widths() == [1, 2, 1, 1]
    known, unknown = X[:1].copy(), X[:1].copy()
    known[0, 1], unknown[0, 1] = scorer.fill[1], np.nan
    # Missing rows are riskier than median rows: the flag must say so (median imputation alone
    # scored them the same).
    assert scorer.margin(unknown)[0] - scorer.margin(known)[0] > 1.0


def test_heavy_tails_get_a_signed_log_and_every_number_is_winsorized() -> None:
    X, y = _messy()
    transforms = fit_transforms(X, categorical=set())

    assert transforms.log == [True, False, False, True]
    lower, upper = np.nanquantile(X[:, 0], [0.005, 0.995])
    assert transforms.lower[0] == pytest.approx(lower) and transforms.upper[0] == pytest.approx(
        upper
    )
    # A rare flag would be erased by clipping: it is left as it is.
    assert transforms.lower[2] is None and transforms.upper[2] is None
    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories={}, seed=0)
    at_bound, beyond = X[:1].copy(), X[:1].copy()
    at_bound[0, 0], beyond[0, 0] = upper, 1e12
    assert scorer.margin(beyond)[0] == scorer.margin(at_bound)[0]


def test_the_log_is_chosen_only_when_it_makes_the_column_less_skewed() -> None:
    rng = np.random.default_rng(1)
    X = np.column_stack(
        [
            rng.lognormal(0, 1.5, 2000),
            (rng.random(2000) < 0.05).astype(float),
            rng.normal(size=2000),
        ]
    )
    transforms = fit_transforms(X, categorical=set())

    assert tail_weight(X[:, 1]) > 2  # a 5% flag is skewed, but a log cannot reshape it
    assert transforms.log == [True, False, False]


def test_the_transforms_raise_cross_validated_auc_on_a_messy_table() -> None:
    X, y = _messy()

    def naive(Xt: np.ndarray, yt: np.ndarray) -> LogisticScorer:
        """What the family did before: median imputation and standardization only."""
        fill = np.nanmedian(Xt, axis=0)
        filled = np.where(np.isnan(Xt), fill, Xt)
        center, scale = filled.mean(axis=0), filled.std(axis=0)
        model = LogisticRegression(C=1.0, max_iter=1000).fit((filled - center) / scale, yt)
        return LogisticScorer(
            model.coef_[0], float(model.intercept_[0]), fill, {}, center, scale, None
        )

    before = _cv_auc(naive, X, y)
    after = _cv_auc(
        lambda Xt, yt: fit_logistic(Xt, yt, params={"C": 1.0}, n_categories={}, seed=0), X, y
    )

    assert after > before + 0.02, (before, after)


def test_same_rows_and_seed_give_the_same_bytes() -> None:
    X, y = _messy(1500)
    first = fit_logistic(X, y, params={"C": 0.5}, n_categories={}, seed=3).to_bytes()
    again = fit_logistic(X.copy(), y.copy(), params={"C": 0.5}, n_categories={}, seed=3).to_bytes()

    assert first == again
    body = json.loads(first)
    assert set(body["transforms"]) == {"lower", "upper", "log", "flagged"}
    restored = LogisticScorer.from_bytes(first)
    np.testing.assert_array_equal(restored.margin(X), LogisticScorer.from_bytes(again).margin(X))
    assert restored.to_bytes() == first


def test_a_model_file_from_before_the_transforms_loads_and_scores_as_before() -> None:
    scorer = LogisticScorer.from_bytes(OLD_FILE)

    assert scorer.transforms is None
    assert scorer.feature_widths() == [1, 3, 1]
    assert scorer.margin(OLD_ROWS).tolist() == OLD_MARGINS
    assert scorer.to_bytes() == OLD_FILE  # re-saving an old model changes no byte


def test_a_transforms_entry_that_does_not_match_the_coefficients_is_refused() -> None:
    X, y = _messy(800)
    body = json.loads(fit_logistic(X, y, params={"C": 1.0}, n_categories={}, seed=0).to_bytes())
    body["transforms"]["flagged"] = []  # one design column fewer than the coefficients

    with pytest.raises(IntegrityError, match="coef, center and scale must each have 4 entries"):
        LogisticScorer.from_bytes(json.dumps(body).encode())
    body["transforms"]["flagged"] = [9]
    with pytest.raises(IntegrityError, match="out of range"):
        LogisticScorer.from_bytes(json.dumps(body).encode())


def test_categorical_features_keep_their_one_hot_columns_and_get_no_flag() -> None:
    X, y = _messy(1500)
    codes = np.random.default_rng(2).integers(0, 4, len(X)).astype(float)
    codes[:100] = np.nan
    X = np.column_stack([X, codes])

    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories={4: 4}, seed=0)

    assert scorer.feature_widths() == [1, 2, 1, 1, 4]
    assert scorer.design(X).shape == (len(X), 9)
    assert scorer.transforms is not None and not scorer.transforms.log[4]


def _categorical_data(seed: int = 3) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Column 0 numeric with NaN, 1 categorical codes (0-3, some NaN), 2 constant, 3 log-normal."""
    rng = np.random.default_rng(seed)
    n = 600
    X = np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 4, size=n).astype(float),
            np.full(n, 7.0),
            rng.lognormal(1.0, 1.5, size=n),
        ]
    )
    margin = X[:, 0] + np.array([-1.0, 0.0, 1.0, 2.0])[X[:, 1].astype(int)] - 0.3 * np.log(X[:, 3])
    y = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    X[rng.random(n) < 0.15, 0] = np.nan
    X[rng.random(n) < 0.05, 1] = np.nan
    return X, y, {1: 4}


def _naive_design(X: np.ndarray, train: np.ndarray, n_categories: dict[int, int]) -> np.ndarray:
    """The design written out longhand from the training rows: median, clip to the 0.5% and
    99.5% quantiles, signed log where the rule says so, missing flag, one-hot, standardize."""
    transforms = fit_transforms(train, set(n_categories))

    def expand(M: np.ndarray) -> np.ndarray:
        columns = []
        for j in range(M.shape[1]):
            if j in n_categories:
                for k in range(n_categories[j]):
                    columns.append([1.0 if v == k else 0.0 for v in M[:, j]])
                continue
            observed = sorted(v for v in train[:, j] if not np.isnan(v))
            median = float(np.median(observed)) if observed else 0.0
            low, high = np.quantile(observed, [0.005, 0.995]) if observed else (0.0, 0.0)
            values = []
            for v in M[:, j]:
                x = median if np.isnan(v) else v
                x = min(max(x, low), high) if low < high else x
                values.append(np.sign(x) * np.log1p(abs(x)) if transforms.log[j] else x)
            columns.append(values)
            if any(np.isnan(v) for v in train[:, j]):
                columns.append([1.0 if np.isnan(v) else 0.0 for v in M[:, j]])
        return np.array(columns, dtype=float).T

    base = expand(train)
    center = base.mean(axis=0)
    scale = np.sqrt(((base - center) ** 2).mean(axis=0))
    scale[scale == 0] = 1.0
    return (expand(X) - center) / scale


def test_logistic_margin_equals_a_naive_reference() -> None:
    X, y, n_categories = _categorical_data()
    train, new = X[:500], X[500:]
    scorer = fit_logistic(train, y[:500], params={"C": 1.0}, n_categories=n_categories, seed=0)

    design = _naive_design(new, train, n_categories)

    assert scorer.transforms is not None and scorer.transforms.log == [False, False, False, True]
    assert design.shape == (100, 1 + 1 + 4 + 1 + 1)  # value and flag, one-hot, constant, log
    expected = design @ scorer.coef + scorer.intercept
    np.testing.assert_allclose(scorer.margin(new), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scorer.probability(new), 1 / (1 + np.exp(-expected)), rtol=1e-10)


def test_logistic_coefficients_match_sklearn_on_the_naive_design() -> None:
    X, y, n_categories = _categorical_data()
    scorer = fit_logistic(
        X, y, params={"C": 0.3, "max_iter": 500}, n_categories=n_categories, seed=0
    )
    reference = LogisticRegression(C=0.3, max_iter=500).fit(_naive_design(X, X, n_categories), y)

    np.testing.assert_allclose(scorer.coef, reference.coef_[0], rtol=1e-6, atol=1e-8)
    assert scorer.intercept == pytest.approx(float(reference.intercept_[0]), rel=1e-6)
    # The categories (design columns 2-5) were built with increasing effect: ordered weights.
    assert list(np.argsort(scorer.coef[2:6])) == [0, 1, 2, 3]


def test_missing_values_and_unseen_categories_score_finitely() -> None:
    X, y, n_categories = _categorical_data()
    scorer = fit_logistic(X, y, params={"C": 1.0}, n_categories=n_categories, seed=0)
    rows = np.array([[np.nan, np.nan, 7.0, 2.0], [np.nan, 2.0, 7.0, 2.0]])

    assert scorer.fill[0] == pytest.approx(float(np.nanmedian(X[:, 0])))
    assert np.all(np.isfinite(scorer.probability(rows)))
    # A missing or unseen category (the preprocessor codes both NaN) has every one-hot column 0.
    np.testing.assert_array_equal(
        scorer.design(rows)[0, 2:6], -scorer.center[2:6] / scorer.scale[2:6]
    )
    # A missing number scores as the median plus its flag's weight (design column 1).
    filled = rows[:1].copy()
    filled[0, 0] = scorer.fill[0]
    flag_weight = scorer.coef[1] / scorer.scale[1]
    assert scorer.margin(rows[:1])[0] - scorer.margin(filled)[0] == pytest.approx(flag_weight)
