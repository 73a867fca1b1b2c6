"""Adverse-action reason codes: the features that pushed a row most towards the adverse outcome.

Keel's positive class is the adverse one (default, fraud), so a reason is a feature
whose contribution to the log-odds is positive. The top ``k`` by contribution are given,
largest first, ties broken by feature order so the answer is deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.explain.contributions import Contributions
from keel.models.artifact import KeelModel


@dataclass(frozen=True)
class Reason:
    """One reason: the feature, the words, what it added to the log-odds, and the row's value."""

    feature: str
    text: str
    contribution: float
    value: Any

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form.

        Built by hand: ``dataclasses.asdict`` deep-copies, a tenth of a request's time.
        """
        return {
            "feature": self.feature,
            "text": self.text,
            "contribution": self.contribution,
            "value": self.value,
        }


def top_reasons(
    contributions: Contributions, X: np.ndarray, model: KeelModel, k: int | None = None
) -> list[list[Reason]]:
    """The top-``k`` adverse reasons of every row (``k`` defaults to the model's ``top_k``)."""
    k = model.top_k if k is None else k
    values = contributions.values
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    out = []
    for row, columns in enumerate(order):
        reasons = []
        for j in columns:
            if values[row, j] <= 0:
                break
            name = contributions.features[j]
            reasons.append(
                Reason(
                    name,
                    model.reason_text(name),
                    float(values[row, j]),
                    display_value(model, j, X[row, j]),
                )
            )
        out.append(reasons)
    return out


def reason_frequency(reasons: Sequence[Sequence[Reason]]) -> list[dict[str, Any]]:
    """How often each feature is the principal (first) reason and how often among the given reasons.

    Counts are over the rows in ``reasons``; features ordered by principal count, then by
    mention count, then by name.
    """
    principal = Counter(row[0].feature for row in reasons if row)
    mentioned = Counter(reason.feature for row in reasons for reason in row)
    texts = {reason.feature: reason.text for row in reasons for reason in row}
    rows = max(len(reasons), 1)
    order = sorted(mentioned, key=lambda name: (-principal[name], -mentioned[name], name))
    return [
        {
            "feature": name,
            "text": texts[name],
            "principal": principal[name],
            "principal_share": principal[name] / rows,
            "mentioned": mentioned[name],
            "mentioned_share": mentioned[name] / rows,
        }
        for name in order
    ]


def display_value(model: KeelModel, j: int, value: float) -> Any:
    """The row's value of feature ``j`` as a person reads it.

    The category for a categorical, None for missing.
    """
    if np.isnan(value):
        return None
    name = model.features[j]
    categories = model.preprocessor.categories_.get(name)
    if categories is not None:
        return categories[int(value)]
    return int(value) if float(value).is_integer() else float(value)
