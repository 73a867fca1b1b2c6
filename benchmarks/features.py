"""Window features: Keel's DuckDB kernel against hand-written DuckDB SQL and pandas (time, memory).

    .venv/bin/python benchmarks/features.py [--rows N] [--cards N] [--days N] [--seed N]
        [--repeats N] [--data-dir DIR]
    .venv/bin/python benchmarks/features.py --scale 50000000 [--data-dir DIR]

Method. Synthetic card transactions (seeded numpy, written chunk by chunk, so generation never
holds more than one chunk): tx_id 0..n-1 in time order, tx_time to the second over ``--days``
days, card, terminal, amount (gamma, in cents), fraud (about 1%). The file is reused when one
with the same rows, cards, days and seed is already in ``--data-dir``. Six features, the Fraud
Detection Handbook's customer ones: each card's transaction count and mean amount over 1, 7
and 30 days. Three contenders compute them: Keel (``features_of_file``, in process), the
DuckDB query an engineer would write by hand (default settings, fetched as Arrow), and pandas
(``groupby("card").rolling("1D", on="tx_time")``). Each run is a fresh subprocess that times
its own read and compute and reports its peak RSS (``VmHWM``) and its RSS after imports;
runs are interleaved ``--repeats`` times and medians reported. The results are compared row by
row: window edges differ (Keel excludes other rows at the same time, pandas counts earlier ties
by position, DuckDB's ``RANGE ... CURRENT ROW`` counts all ties and events exactly a window
back), so agreement is reported, not asserted. Targets: Keel's time and peak RSS each at most
1.2 times DuckDB's, pandas' time at least 8 times Keel's.

``--scale N`` writes N rows (N/25 cards) as a folder of 5M-row files and runs Keel on a local
Dask cluster of 2 workers (6 GiB each), sampling each worker's RSS every 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CONTENDERS = ("keel", "duckdb", "pandas")
WINDOWS = (1, 7, 30)
NAMES = [f"card_{agg}_{days}d" for days in WINDOWS for agg in ("nb_tx", "avg_amount")]
CHUNK_ROWS = 1_000_000  # rows generated at a time
FILE_ROWS = 5_000_000  # rows per file of a --scale folder
ROW_GROUP_ROWS = (
    100_000  # near DuckDB's default (122,880); pyarrow's would put 1M rows in one group
)
START = np.datetime64("2024-01-01T00:00:00", "us")


def parse_args() -> argparse.Namespace:
    """The command line (``--contender``, ``--data`` and ``--result`` are for the child runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="transactions")
    parser.add_argument("--cards", type=int, default=200_000, help="distinct cards")
    parser.add_argument("--days", type=int, default=90, help="days the transactions span")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generator")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each contender (interleaved)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "keel-bench-features"
    )
    parser.add_argument(
        "--scale", type=int, help="run Keel on Dask over a folder of this many rows instead"
    )
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def chunks(rows: int, cards: int, days: int, seed: int) -> Iterator[pa.Table]:
    """The transactions, ``CHUNK_ROWS`` at a time, each chunk later in time than the one before."""
    span = days * 86_400
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        size = min(CHUNK_ROWS, rows - start)
        rng = np.random.default_rng([seed, index])
        low, high = span * start // rows, span * (start + size) // rows
        seconds = np.sort(rng.integers(low, max(high, low + 1), size))
        yield pa.table(
            {
                "tx_id": np.arange(start, start + size, dtype=np.int64),
                "tx_time": START + seconds.astype("timedelta64[s]"),
                "card": rng.integers(0, cards, size),
                "terminal": rng.integers(0, 10_000, size),
                "amount": np.round(rng.gamma(2.0, 30.0, size), 2),
                "fraud": (rng.random(size) < 0.01).astype(np.int64),
            }
        )


def write_data(
    rows: int, cards: int, days: int, seed: int, data_dir: Path, *, file_rows: int | None = None
) -> Path:
    """The Parquet file (or, with ``file_rows``, folder of files) of these parameters.

    It is written if missing.
    """
    name = f"tx-{rows}r-{cards}c-{days}d-s{seed}" + ("" if file_rows is None else f"-{file_rows}pf")
    target = data_dir / (name + (".parquet" if file_rows is None else ""))
    if target.exists():
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / (target.name + ".partial")
    if partial.is_dir():
        shutil.rmtree(partial)
    partial.unlink(missing_ok=True)
    print(f"writing {rows:,} transactions to {target} ...", flush=True)
    writer, written = None, 0
    for chunk in chunks(rows, cards, days, seed):
        if writer is None or (file_rows is not None and written % file_rows == 0):
            if writer is not None:
                writer.close()
            if file_rows is None:
                path = partial
            else:
                partial.mkdir(exist_ok=True)
                path = partial / f"part-{written // file_rows:05d}.parquet"
            writer = pq.ParquetWriter(path, chunk.schema)
        writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
        written += len(chunk)
    writer.close()
    partial.rename(target)
    return target


def keel_plan(source: str) -> Any:
    """Keel's plan for the six features of ``source``."""
    from keel.features.windows import FeaturePlan
    from keel.spec import parse_spec

    ints = {"dtype": "int"}
    return FeaturePlan.of(
        parse_spec(
            {
                "project": "bench",
                "data": {"source": source, "id_column": "tx_id", "time_column": "tx_time"},
                "contract": {
                    "columns": {
                        "tx_id": ints,
                        "tx_time": {"dtype": "datetime"},
                        "card": ints,
                        "terminal": ints,
                        "amount": {"dtype": "float"},
                        "fraud": ints,
                    }
                },
                "target": {"column": "fraud"},
                "features": {
                    "include": ["amount"],
                    "windows": {
                        "card": {
                            "entity": "card",
                            "windows": [f"{d}d" for d in WINDOWS],
                            "aggregations": {
                                "nb_tx": {"function": "count"},
                                "avg_amount": {"function": "mean", "column": "amount"},
                            },
                        }
                    },
                },
            }
        )
    )


def hand_sql(path: Path) -> str:
    """The window query a competent engineer would write for the six features."""
    items = ", ".join(
        f"count(*) OVER w{d}d AS card_nb_tx_{d}d, avg(amount) OVER w{d}d AS card_avg_amount_{d}d"
        for d in WINDOWS
    )
    frames = ", ".join(
        f"w{d}d AS (PARTITION BY card ORDER BY tx_time RANGE BETWEEN INTERVAL {d} DAY PRECEDING "
        "AND CURRENT ROW)"
        for d in WINDOWS
    )
    return f"SELECT tx_id, {items} FROM read_parquet('{path}') WINDOW {frames}"


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB.

    Not ``ru_maxrss``: Linux carries the parent's peak over into a child across fork and exec,
    so a child's ``ru_maxrss`` is never below the benchmark process's own peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(contender: str, path: Path, result: Path) -> None:
    """Run one contender in this (fresh) process; print its timing and memory as one JSON line."""
    if contender == "keel":
        import duckdb

        from keel.features.offline import features_of_file

        plan = keel_plan(str(path))
    elif contender == "duckdb":
        import duckdb

        query = hand_sql(path)
    else:
        import pandas as pd
    after_imports = rss_kib("VmRSS")
    start = time.perf_counter()
    if contender == "keel":
        table = features_of_file(str(path), plan, "tx_id")
    elif contender == "duckdb":
        table = duckdb.sql(query).to_arrow_table()
    else:
        frame = pd.read_parquet(path, columns=["tx_id", "tx_time", "card", "amount"])
        frame = frame.sort_values(["card", "tx_time"], kind="stable")
        grouped, values = (
            frame.groupby("card"),
            {"tx_id": frame["tx_id"].to_numpy()},
        )  # results come in this order
        for days in WINDOWS:
            rolling = grouped.rolling(f"{days}D", on="tx_time")["amount"]
            values[f"card_nb_tx_{days}d"] = rolling.count().to_numpy()
            values[f"card_avg_amount_{days}d"] = rolling.mean().to_numpy()
        table = pd.DataFrame(values)
    seconds = time.perf_counter() - start
    peak = rss_kib("VmHWM")
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table.select(["tx_id", *NAMES]), result)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "rss_after_imports_kib": after_imports,
                "peak_rss_kib": peak,
                "rows": table.num_rows,
            }
        )
    )


def run_child(contender: str, path: Path, result: Path) -> dict[str, Any]:
    """One contender in a fresh subprocess; its report."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--contender",
            contender,
            "--data",
            str(path),
            "--result",
            str(result),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{contender} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_tx_id(path: Path, rows: int) -> np.ndarray:
    """A result file's six features as a (rows, 6) array indexed by tx_id."""
    table = pq.read_table(path)
    values = np.full((rows, len(NAMES)), np.nan)
    order = table.column("tx_id").to_numpy()
    for j, name in enumerate(NAMES):
        values[order, j] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return values


def disagreeing(a: np.ndarray, b: np.ndarray) -> int:
    """Rows where any of the six values differ (beyond relative 1e-9; NaN equals NaN)."""
    close = np.abs(a - b) <= 1e-9 * np.maximum(1.0, np.abs(a))
    return int(np.sum(~np.all(close | (np.isnan(a) & np.isnan(b)), axis=1)))


def benchmark(args: argparse.Namespace) -> None:
    """Generate (or reuse) the file, run the contenders interleaved, print the table and checks."""
    path = write_data(args.rows, args.cards, args.days, args.seed, args.data_dir)
    results = {c: args.data_dir / f"result-{c}-{path.stem}.parquet" for c in CONTENDERS}
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    for repeat in range(args.repeats):
        for contender in CONTENDERS:
            run = run_child(contender, path, results[contender])
            if run["rows"] != args.rows:
                sys.exit(f"{contender} returned {run['rows']:,} rows, expected {args.rows:,}")
            runs[contender].append(run)
            print(
                f"  run {repeat + 1}/{args.repeats} {contender}: {run['seconds']:.2f} s, "
                f"peak RSS {run['peak_rss_kib'] / 1024:.0f} MB",
                flush=True,
            )
    seconds = {c: statistics.median(r["seconds"] for r in runs[c]) for c in CONTENDERS}
    peak = {c: statistics.median(r["peak_rss_kib"] for r in runs[c]) / 1024 for c in CONTENDERS}
    base = {
        c: statistics.median(r["rss_after_imports_kib"] for r in runs[c]) / 1024 for c in CONTENDERS
    }
    print(
        f"\n{args.rows:,} rows, {args.cards:,} cards, {args.days} days; {os.cpu_count()} CPUs; "
        f"medians of {args.repeats} runs\n"
    )
    print("| contender | wall s | peak RSS MB | RSS after imports MB | peak - after imports MB |")
    print("|---|---:|---:|---:|---:|")
    for c in CONTENDERS:
        print(
            f"| {c} | {seconds[c]:.2f} | {peak[c]:.0f} | {base[c]:.0f} | {peak[c] - base[c]:.0f} |"
        )
    checks = [
        ("Keel time / DuckDB time", seconds["keel"] / seconds["duckdb"], "<=", 1.2),
        ("Keel memory / DuckDB memory", peak["keel"] / peak["duckdb"], "<=", 1.2),
        ("pandas time / Keel time", seconds["pandas"] / seconds["keel"], ">=", 8.0),
    ]
    print()
    for label, ratio, op, target in checks:
        met = ratio <= target if op == "<=" else ratio >= target
        print(f"{label}: {ratio:.2f} (target {op} {target}): {'met' if met else 'NOT met'}")
    values = {c: by_tx_id(results[c], args.rows) for c in CONTENDERS}
    print()
    for a, b in (("keel", "duckdb"), ("keel", "pandas"), ("duckdb", "pandas")):
        differ = disagreeing(values[a], values[b])
        print(
            f"rows where all six features agree, {a} vs {b}: {100 * (1 - differ / args.rows):.4f}% "
            f"({differ:,} rows differ)"
        )


def quiet_shuffle_logs() -> None:
    """Silence ``distributed.shuffle`` warnings in this process (run on each worker too)."""
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)


def scale(args: argparse.Namespace) -> None:
    """Keel on a 2-worker local Dask cluster over a folder of ``--scale`` rows.

    Prints the time, the rows written and the workers' RSS.
    """
    import duckdb
    import psutil

    from keel.engine import open_engine
    from keel.features.offline import features_of_file

    rows, cards = args.scale, max(args.scale // 25, 1)
    folder = write_data(rows, cards, args.days, args.seed, args.data_dir, file_rows=FILE_ROWS)
    out = args.data_dir / f"features-{folder.name}"
    shutil.rmtree(out, ignore_errors=True)
    plan = keel_plan(f"{folder}/*.parquet")
    quiet_shuffle_logs()
    with open_engine("local", workers=2, memory_limit="6GiB") as engine:
        engine.client.run(quiet_shuffle_logs)
        pids = engine.client.run(os.getpid)
        peaks, gone, stop = dict.fromkeys(pids.values(), 0), set(), threading.Event()

        def sample() -> None:
            """Record each worker's highest RSS until stopped."""
            while not stop.is_set():
                for pid in peaks:
                    try:
                        peaks[pid] = max(peaks[pid], psutil.Process(pid).memory_info().rss)
                    except psutil.NoSuchProcess:
                        gone.add(pid)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        folders = features_of_file(
            f"{folder}/*.parquet", plan, "tx_id", engine=engine, out=str(out), partitions=64
        )
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
    written = duckdb.sql(f"SELECT count(*) FROM read_parquet('{folders[0]}/*.parquet')").fetchall()[
        0
    ][0]
    print(
        f"\n{rows:,} rows in {len(list(folder.glob('*.parquet')))} files, {cards:,} cards; "
        f"2 workers of 6 GiB on {os.cpu_count()} CPUs"
    )
    print(f"wall time: {seconds:.1f} s ({rows / seconds:,.0f} rows/s)")
    print(f"rows written: {written:,} ({'all' if written == rows else 'NOT all'})")
    for address, pid in pids.items():
        note = " (the process ended during the run: restarted?)" if pid in gone else ""
        print(f"peak RSS of worker {address} (pid {pid}): {peaks[pid] / 2**20:,.0f} MB{note}")


def main() -> None:
    """Child mode with ``--contender``, the scale run with ``--scale``, else the comparison."""
    args = parse_args()
    if args.contender:
        child(args.contender, args.data, args.result)
    elif args.scale:
        scale(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
