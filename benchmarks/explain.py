"""Exact TreeSHAP: Keel's kernel against LightGBM's native ``pred_contrib``, side by side.

    .venv/bin/python benchmarks/explain.py [--credit-dir DIR]

Both produce the same numbers (the largest difference is printed); the table gives the
median time per row for one-row calls and for 1,000-row batches, and the speed-up.
Models: the reference model (300 trees, 31 leaves, 25 features, from reference.py) and
the credit example's LightGBM model, trained here unless ``--credit-dir`` names a project
folder where ``make demo`` already registered it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keel.explain.treeshap import TreeShap

from reference import reference_booster, reference_data

ROOT = Path(__file__).resolve().parents[1]


def per_row(call: Callable[[], object], rows: int, repeats: int) -> float:
    """Median seconds per row over ``repeats`` timed calls, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / rows


def compare(name: str, booster, X: np.ndarray) -> list[str]:
    """Rows of the result table for one model."""
    kernel = TreeShap.from_model_text(booster.model_to_string())
    batch = X[:1000]
    diff = float(
        np.abs(kernel.contributions(batch) - booster.predict(batch, pred_contrib=True)).max()
    )
    lines = []
    for label, rows, repeats in (("1 row", 1, 200), ("1,000 rows", 1000, 7)):
        data = X[:rows]
        native = per_row(lambda d=data: booster.predict(d, pred_contrib=True), rows, repeats)
        ours = per_row(lambda d=data: kernel.contributions(d), rows, repeats)
        lines.append(
            f"| {name} | {label} | {native * 1e3:.3f} | {ours * 1e3:.3f} "
            f"| {native / ours:.1f}x | {diff:.1e} |"
        )
    return lines


def credit_booster(credit_dir: Path | None):
    """The credit example's LightGBM model and its preprocessed rows."""
    from keel.lifecycle.run import prepare_data, run_project
    from keel.registry.store import Registry
    from keel.spec import load_spec

    spec = load_spec(ROOT / "examples" / "credit_default" / "keel.yaml")
    project_dir = credit_dir or Path(tempfile.mkdtemp(prefix="keel-bench-"))
    registry = Registry.for_project(project_dir)
    if credit_dir is None:
        run_project(spec, project_dir=project_dir, with_card=False)
    model, _ = registry.load_model(
        spec.model_name(), registry.versions(spec.model_name())[-1].version
    )
    if model.family != "lightgbm":
        sys.exit("the credit model is not LightGBM; nothing to compare")
    frame = prepare_data(spec).frame
    return model.scorer.booster, model.preprocessor.transform(frame)


def main() -> None:
    """Print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--credit-dir", type=Path, help="a project folder holding a registered credit model"
    )
    args = parser.parse_args()
    print("| model | call | native ms/row | Keel ms/row | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    X, _ = reference_data(rows=2000, seed=1)
    for line in compare("reference (300 trees, 31 leaves, 25 features)", reference_booster(), X):
        print(line, flush=True)
    booster, X_credit = credit_booster(args.credit_dir)
    name = f"credit ({booster.num_trees()} trees, {booster.num_feature()} features)"
    for line in compare(name, booster, X_credit):
        print(line, flush=True)


if __name__ == "__main__":
    main()
