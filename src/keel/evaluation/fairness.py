"""Fairness by protected group (fairlearn's MetricFrame), at the spec's decision threshold.

A *decision* is adverse when the score reaches the threshold (for credit: decline). Per
group: rows, observed rate, adverse-decision rate, approval rate, TPR, FPR and AUC. Per
attribute: the adverse impact ratio (lowest approval rate over the highest; the
"four-fifths rule" asks for at least 0.8) and the equal-opportunity difference (largest
gap in TPR). Every group is shown, but the ratio uses only groups of at least
``min_group_size`` rows and the TPR gap only groups with at least that many positives, so
a handful of cases cannot decide a gate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.spec import FairnessSpec


def group_labels(values: pd.Series, column: str, fairness: FairnessSpec) -> pd.Series:
    """Group names for one protected attribute: bands for numbers, labels for codes."""
    if column in fairness.bands:
        cuts = fairness.bands[column]
        edges = [-np.inf, *cuts, np.inf]
        names = (
            [f"< {cuts[0]:g}"]
            + [f"{a:g} to < {b:g}" for a, b in zip(cuts, cuts[1:], strict=False)]
            + [f">= {cuts[-1]:g}"]
        )
        return pd.cut(values.astype("float64"), edges, right=False, labels=names).astype(str)
    labels = {str(k): v for k, v in fairness.labels.get(column, {}).items()}
    return values.astype(str).map(lambda v: labels.get(v, v))


def _ordered(groups: np.ndarray, column: str, fairness: FairnessSpec) -> list[str]:
    """Bands in ascending order; other groups sorted by name."""
    present = set(groups)
    if column in fairness.bands:
        probe = pd.Series([-np.inf, *fairness.bands[column]])
        return [g for g in dict.fromkeys(group_labels(probe, column, fairness)) if g in present]
    return sorted(present)


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None


def fairness_report(
    protected: pd.DataFrame,
    y: np.ndarray,
    score: np.ndarray,
    *,
    threshold: float,
    fairness: FairnessSpec,
) -> list[dict[str, Any]]:
    """One entry per protected attribute: per-group rates and the attribute's summary ratios."""
    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    decision = (score >= threshold).astype(int)
    report = []
    for column in protected.columns:
        groups = group_labels(protected[column].reset_index(drop=True), column, fairness).to_numpy()
        frame = MetricFrame(
            metrics={
                "adverse_rate": selection_rate,
                "tpr": true_positive_rate,
                "fpr": false_positive_rate,
            },
            y_true=y,
            y_pred=decision,
            sensitive_features=pd.Series(groups, name=column),
        ).by_group
        rows: list[dict[str, Any]] = []
        for name in _ordered(groups, column, fairness):
            mask = groups == name
            rows.append(
                {
                    "group": str(name),
                    "n": int(mask.sum()),
                    "positives": int(y[mask].sum()),
                    "positive_rate": float(y[mask].mean()),
                    "adverse_rate": float(frame.loc[name, "adverse_rate"]),
                    "approval_rate": 1.0 - float(frame.loc[name, "adverse_rate"]),
                    "tpr": _nan_to_none(frame.loc[name, "tpr"]),
                    "fpr": _nan_to_none(frame.loc[name, "fpr"]),
                    "auc": _auc(y[mask], score[mask]),
                }
            )
        counted = [r for r in rows if r["n"] >= fairness.min_group_size]
        approvals = [r["approval_rate"] for r in counted]
        tprs = [
            r["tpr"]
            for r in rows
            if r["tpr"] is not None and r["positives"] >= fairness.min_group_size
        ]
        report.append(
            {
                "attribute": column,
                "groups": rows,
                "adverse_impact_ratio": (min(approvals) / max(approvals))
                if approvals and max(approvals) > 0
                else None,
                "equal_opportunity_difference": (max(tprs) - min(tprs)) if len(tprs) >= 2 else None,
            }
        )
    return report


def _nan_to_none(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value
