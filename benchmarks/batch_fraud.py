"""Batch scoring of the card-fraud transactions with their window features: in process against Dask.

    .venv/bin/python benchmarks/batch_fraud.py [--copies K] [--trials N] [--reasons]
        [--data-dir DIR]

Method. A model is trained on the example's spec (``examples/card_fraud/keel.yaml``, the
handbook's protocol) with ``--trials`` tuning trials; its quality does not matter here, only
its size (the example's 4095 bins and its 17 window features). The input is the handbook's
raw transactions (1.75 M rows, 183 days); ``--copies K`` makes a file K times larger by
repeating it with customer, terminal and transaction ids moved out of each other's way, so
every copy has the same window features as the original. Two contenders score it from raw
transactions to a Parquet output holding the id and the probability (and the reasons with
``--reasons``):

- **in process**: ``add_features`` (DuckDB over the whole table) on the frame read from
  Parquet, written to Parquet, then ``score_file`` in chunks of 50,000 rows;
- **Dask**: ``score_on_cluster`` on a ``LocalCluster`` of 2 single-threaded worker processes,
  which computes the features on the cluster (shuffled by entity) and scores each partition.

Each is timed end to end (reading included) in this process; the peak RSS of this process
(which trained the model too, so it is an upper bound) and, for Dask, of each worker (sampled
every 0.5 s) are printed. The two outputs must give the
same probability to every transaction id (to 1e-12: feature sums may differ in the last
bits), or the script exits 1.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "card_fraud"
DATA = EXAMPLE / "data" / "fraud_handbook_simulated_raw.parquet"


def _input(copies: int, folder: Path) -> Path:
    """The raw transactions, repeated ``copies`` times with ids that never collide."""
    if copies == 1:
        return DATA
    path = folder / f"fraud_x{copies}.parquet"
    if path.exists():
        return path
    frame = pd.read_parquet(DATA)
    step = {c: int(frame[c].max()) + 1 for c in ("CUSTOMER_ID", "TERMINAL_ID", "TRANSACTION_ID")}
    parts = [frame.assign(**{c: frame[c] + k * s for c, s in step.items()}) for k in range(copies)]
    pd.concat(parts, ignore_index=True).sort_values("TX_DATETIME", kind="stable").to_parquet(
        path, index=False
    )
    return path


def _spec(trials: int):
    from keel.spec import parse_spec

    raw = yaml.safe_load((EXAMPLE / "keel.yaml").read_text())
    raw["data"]["source"] = str(DATA)
    raw["tuning"]["trials"] = trials
    return parse_spec(raw)


def _in_process(engine, spec, source: Path, out: Path, reasons: bool) -> float:
    from keel.features.offline import add_features
    from keel.serving.batch import score_file

    start = time.perf_counter()
    featured = out.with_name("featured.parquet")
    add_features(pd.read_parquet(source), spec).to_parquet(featured, index=False)
    score_file(engine, str(featured), str(out), keep=[spec.data.id_column], reasons=reasons)
    return time.perf_counter() - start


def _on_dask(engine, spec, source: Path, out: Path, reasons: bool) -> tuple[float, list[float]]:
    from keel.engine import open_engine
    from keel.serving.distributed import score_on_cluster

    with open_engine("local", workers=2) as cluster:
        peaks: dict[str, float] = {}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                for worker, info in cluster.client.scheduler_info(n_workers=-1)["workers"].items():
                    peaks[worker] = max(peaks.get(worker, 0.0), info["metrics"]["memory"] / 2**20)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        score_on_cluster(
            engine,
            cluster,
            str(source),
            str(out),
            spec=spec,
            keep=[spec.data.id_column],
            reasons=reasons,
        )
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return seconds, sorted(peaks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--reasons", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)

    from keel.lifecycle.run import prepare_data
    from keel.serving.served import ServedModel
    from keel.training.trainer import train_model

    spec = _spec(args.trials)
    t0 = time.perf_counter()
    engine = ServedModel(train_model(prepare_data(spec).frame, spec).model, "card_fraud", 1)
    print(f"trained in {time.perf_counter() - t0:.0f} s ({args.trials} trials)")
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        folder = Path(tmp)
        source = _input(args.copies, args.data_dir or folder)
        rows = pd.read_parquet(source, columns=["TRANSACTION_ID"]).shape[0]
        local_s = _in_process(engine, spec, source, folder / "local.parquet", args.reasons)
        local_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        dask_s, worker_peaks = _on_dask(engine, spec, source, folder / "dask", args.reasons)
        key = spec.data.id_column
        local = pd.read_parquet(folder / "local.parquet", columns=[key, "probability"]).set_index(
            key
        )
        dask = pd.read_parquet(folder / "dask", columns=[key, "probability"]).set_index(key)
        same = len(dask) == len(local) == rows and np.allclose(
            dask["probability"].reindex(local.index).to_numpy(),
            local["probability"].to_numpy(),
            rtol=1e-12,
            atol=0,
        )
    print(f"{rows:,} transactions, reasons {'on' if args.reasons else 'off'}")
    print(f"{'contender':<12} {'wall':>8} {'rows/s':>10}  peak RSS")
    print(
        f"{'in process':<12} {local_s:>7.1f}s {rows / local_s:>10,.0f}  "
        f"{local_peak:,.0f} MB (this process, training included)"
    )
    print(
        f"{'Dask (2)':<12} {dask_s:>7.1f}s {rows / dask_s:>10,.0f}  "
        f"{' / '.join(f'{p:,.0f}' for p in worker_peaks)} MB per worker"
    )
    print(f"Dask / in process: {dask_s / local_s:.2f}x time; probabilities equal by id: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
