"""Batch scoring: throughput, bounded memory, and agreement with the API on the same rows.

    .venv/bin/python benchmarks/batch.py [--project-dir DIR] [--rows N] [--format parquet|csv]
        [--quick] [--json PATH]

Method. The input is built from the real UCI credit rows
(``examples/credit_default/data/UCI_Credit_Card.csv``) by resampling them with a fixed seed
and numbering the IDs afresh: the real file holds only 30,000 clients, and the point is a
file of a million. ``keel score`` runs as a subprocess (``--chunk-rows 50000``, reasons on)
on a file of ``--rows`` rows and on one a tenth of that size; each run is timed end to end
(start-up and model load included) and its peak RSS is read from ``/usr/bin/time -v``, or
from the line ``keel score`` prints where that tool is missing. Memory is bounded when the
peak at the full size stays close to the peak at a tenth of it. Then rows spread over the
big file (its first and last chunk included) are sent as JSON records, typed by the model's
input contract, to ``POST /v1/score/batch`` of the real app in process, and each answer
must equal the batch output exactly: probability, decision, and reasons. Any mismatch
exits non-zero.

The model is the champion of ``--project-dir``; by default the credit example is trained
into a temporary project first (``keel run``, a few minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from keel.registry.store import Registry
from keel.serving.batch import read_chunks
from keel.serving.loader import load_alias
from keel.serving.served import ServedModel

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "credit_default" / "keel.yaml"
DATA = ROOT / "examples" / "credit_default" / "data" / "UCI_Credit_Card.csv"
BIN = Path(sys.executable).parent
TIME = Path("/usr/bin/time")
ROW_GROUP_ROWS = (
    100_000  # near DuckDB's default (122,880); pyarrow's would put 1M rows in one group
)
API_BATCH = 1000


@dataclass(frozen=True)
class Run:
    """One ``keel score`` run."""

    rows: int
    seconds: float
    peak_rss_mb: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


@dataclass(frozen=True)
class Agreement:
    """Batch output against API answers for the same rows."""

    compared: int
    mismatches: int
    examples: list[str]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project-dir", type=Path, help="a project folder holding the trained credit model"
    )
    parser.add_argument("--model", default="credit_default", help="registered model name")
    parser.add_argument(
        "--rows",
        type=int,
        default=1_000_000,
        help="rows of the big file (the small one has a tenth)",
    )
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="passed to keel score")
    parser.add_argument(
        "--format", choices=["parquet", "csv"], default="parquet", help="input file format"
    )
    parser.add_argument("--sample", type=int, default=2000, help="rows compared with the API")
    parser.add_argument("--seed", type=int, default=7, help="seed of the resampling")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 50,000 rows in chunks of 5,000"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.chunk_rows = 50_000, 5_000
    return args


def train(project_dir: Path) -> None:
    """Train and register the credit example into ``project_dir``."""
    subprocess.run(
        [str(BIN / "keel"), "run", str(SPEC), "--project-dir", str(project_dir), "--quiet"],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def champion_registry(project_dir: Path, name: str, scratch: Path) -> Path:
    """A project folder whose registry has ``name@champion``: ``project_dir`` itself if it has one.

    Otherwise a copy of its registry database in ``scratch`` gets the alias on the newest
    version. The credit model is a candidate (some gates fail), so a benchmark bypasses
    governance here, in the copy only; the project itself is left as it was.
    """
    if not (project_dir / "mlflow.db").is_file():
        sys.exit(f"{project_dir} holds no mlflow.db; give a project folder that `keel run` trained")
    if Registry.for_project(project_dir).alias(name, "champion") is not None:
        return project_dir
    scratch.mkdir(parents=True)
    shutil.copy2(project_dir / "mlflow.db", scratch / "mlflow.db")
    registry = Registry.for_project(scratch)
    registry.set_alias(name, "champion", registry.versions(name)[-1].version)
    return scratch


def write_input(rows: int, seed: int, contract: dict[str, dict], path: Path) -> None:
    """``rows`` real rows drawn with replacement, IDs 1..rows, as Parquet or CSV (by suffix)."""
    real = pd.read_csv(DATA)
    ints = [c for c, rule in contract.items() if rule["dtype"] == "int"]
    real[ints] = real[ints].astype("int64")  # the CSV writes some whole amounts as 5e+05
    drawn = real.iloc[np.random.default_rng(seed).integers(0, len(real), rows)].reset_index(
        drop=True
    )
    drawn["ID"] = np.arange(1, rows + 1)
    if path.suffix == ".parquet":
        pq.write_table(
            pa.Table.from_pandas(drawn, preserve_index=False), path, row_group_size=ROW_GROUP_ROWS
        )
    else:
        drawn.to_csv(path, index=False)


def score(
    project_dir: Path, name: str, source: Path, target: Path, chunk_rows: int, rows: int
) -> Run:
    """Run ``keel score`` on ``source`` and measure its wall time and peak RSS."""
    command = [
        str(BIN / "keel"),
        "score",
        "--project-dir",
        str(project_dir),
        "--model",
        name,
        "--input",
        str(source),
        "--output",
        str(target),
        "--chunk-rows",
        str(chunk_rows),
        "--keep",
        "ID",
    ]
    if TIME.exists():
        command = [str(TIME), "-v", *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"keel score failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    printed = " ".join(done.stdout.split())  # rich wraps long lines
    scored = re.search(r"scored (\d+) rows", printed)
    if scored is None or int(scored.group(1)) != rows:
        sys.exit(f"keel score did not report {rows} rows: {printed}")
    return Run(rows, seconds, peak_rss_mb(printed, done.stderr))


def peak_rss_mb(printed: str, stderr: str) -> float:
    """Peak RSS from ``/usr/bin/time -v`` (kB) when it ran, else from ``keel score``'s own line."""
    measured = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if measured:
        return int(measured.group(1)) / 1024
    reported = re.search(r"peak RSS (\d+) MB", printed)
    if reported is None:
        sys.exit(f"no peak RSS in keel score's output: {printed}")
    return float(reported.group(1))


def sample_positions(rows: int, sample: int) -> list[int]:
    """Row positions spread evenly over the file from its first row to its last.

    So the positions include its first and last chunk.
    """
    return sorted(set(np.linspace(0, rows - 1, min(sample, rows)).round().astype(int).tolist()))


def take(url: str, positions: list[int], contract: dict[str, dict] | None) -> pd.DataFrame:
    """The rows at ``positions`` of a file, read chunk by chunk with the batch scorer's reader."""
    wanted = np.asarray(positions)
    parts, offset = [], 0
    for chunk in read_chunks(url, 100_000, contract):
        inside = wanted[(wanted >= offset) & (wanted < offset + len(chunk))] - offset
        parts.append(chunk.iloc[inside])
        offset += len(chunk)
    return pd.concat(parts, ignore_index=True)


def to_records(frame: pd.DataFrame, contract: dict[str, dict]) -> list[dict[str, Any]]:
    """JSON records of the contract's columns, each value of its contract type (missing: None)."""
    cast = {"int": int, "float": float, "str": str, "bool": bool}
    return [
        {
            c: None if pd.isna(row[c]) else cast[rule["dtype"]](row[c])
            for c, rule in contract.items()
        }
        for row in frame.to_dict("records")
    ]


def api_answers(engine: ServedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's answers for ``records``: ``POST /v1/score/batch`` of the real app, in process."""
    from fastapi.testclient import TestClient

    from keel.serving.app import create_app

    answers: list[dict[str, Any]] = []
    with TestClient(create_app(engine, max_batch=API_BATCH)) as client:
        for start in range(0, len(records), API_BATCH):
            response = client.post(
                "/v1/score/batch", json={"records": records[start : start + API_BATCH]}
            )
            if response.status_code != 200:
                sys.exit(f"the API answered {response.status_code}: {response.text[:500]}")
            answers.extend(response.json()["results"])
    return answers


def agree(inputs: pd.DataFrame, outputs: pd.DataFrame, answers: list[dict[str, Any]]) -> Agreement:
    """Compare batch output rows with the API's answers for the same input rows, exactly."""
    problems = []
    for given, row, answer in zip(
        inputs.itertuples(), outputs.to_dict("records"), answers, strict=True
    ):
        fields = {
            "ID": (row["ID"], given.ID),
            "probability": (row["probability"], answer["probability"]),
            "decision": (row["decision"], answer["decision"]),
            "version": (row["version"], answer["version"]),
            "reasons": (json.loads(row["reasons"]), answer["reasons"]),
        }
        wrong = [f"{k}: batch {b!r} api {a!r}" for k, (b, a) in fields.items() if b != a]
        if wrong:
            problems.append(f"ID {given.ID}: " + "; ".join(wrong))
    return Agreement(len(answers), len(problems), problems[:5])


def report(runs: list[Run], agreement: Agreement) -> dict[str, Any]:
    """Print the table and the findings; return them for ``--json``."""
    small, big = runs
    marginal = (big.rows - small.rows) / (big.seconds - small.seconds)
    ratio = big.peak_rss_mb / small.peak_rss_mb
    print("| rows | seconds | rows/s | peak RSS MB |")
    print("|---:|---:|---:|---:|")
    for run in runs:
        print(
            f"| {run.rows:,} | {run.seconds:.1f} | {run.rows_per_second:,.0f} "
            f"| {run.peak_rss_mb:.0f} |"
        )
    print(f"\nscoring rate without start-up (between the two sizes): {marginal:,.0f} rows/s")
    print(f"peak RSS at {big.rows:,} rows / at {small.rows:,} rows: {ratio:.2f}")
    print(
        f"agreement with the API: {agreement.compared:,} rows compared, "
        f"{agreement.mismatches} mismatches"
    )
    for example in agreement.examples:
        print(f"  {example}")
    return {
        "runs": [asdict(r) | {"rows_per_second": r.rows_per_second} for r in runs],
        "marginal_rows_per_second": marginal,
        "peak_rss_ratio": ratio,
        "agreement": asdict(agreement),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    """Build the inputs, score them, compare with the API, print the results."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-batch-bench-") as tmp:
        work = Path(tmp)
        project_dir = args.project_dir or work / "project"
        if args.project_dir is None:
            print(f"training the credit example into {project_dir} ...", flush=True)
            train(project_dir)
        registry_dir = champion_registry(project_dir, args.model, work / "registry")

        engine = load_alias(Registry.for_project(registry_dir), args.model)
        contract = engine.model.metadata["contract"]
        runs = []
        for rows in (math.ceil(args.rows / 10), args.rows):
            source, target = work / f"input-{rows}.{args.format}", work / f"scored-{rows}.parquet"
            write_input(rows, args.seed, contract, source)
            print(f"scoring {rows:,} rows ...", flush=True)
            runs.append(score(registry_dir, args.model, source, target, args.chunk_rows, rows))

        positions = sample_positions(args.rows, args.sample)
        inputs = take(str(source), positions, contract)
        outputs = take(str(target), positions, None)
        agreement = agree(inputs, outputs, api_answers(engine, to_records(inputs, contract)))
        results = report(runs, agreement) | {"format": args.format, "chunk_rows": args.chunk_rows}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if agreement.mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
