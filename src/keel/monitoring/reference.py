"""What a model keeps for monitoring, computed at training: drift baseline, reference performance.

Stored in the model's metadata under ``monitoring``; :mod:`keel.monitoring.monitor` reads it
back. Pure statistics, so the trainer can call it without depending on the monitoring flow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.monitoring.baseline import Baseline, build_baseline
from keel.monitoring.estimate import estimate_performance, realized_performance

SCORE = "probability"  # the score's name among the drift features, as events and logs call it


def model_baseline(
    inputs: pd.DataFrame,
    categorical: list[str],
    test_scores: np.ndarray,
    y_test: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """What a model keeps for monitoring: its inputs' and test scores' baseline, test performance.

    The inputs' baseline is of the training data.
    """
    base = build_baseline(inputs, categorical=[c for c in categorical if c in inputs.columns])
    score = build_baseline({SCORE: np.asarray(test_scores, dtype="float64")})
    return {
        "baseline": Baseline(base.n_rows, base.features + score.features).to_dict(),
        "reference": realized_performance(y_test, test_scores, threshold=threshold).to_dict(),
        "reference_estimate": estimate_performance(test_scores, threshold=threshold).to_dict(),
    }
