"""Serving: the credit model behind ``keel serve`` and behind ``mlflow models serve``, side by side.

    .venv/bin/python benchmarks/serving.py [--project-dir DIR] [--seconds 10] [--quick]
        [--json PATH]

Method. One LightGBM credit model (trained here into a temporary project, or taken from
``--project-dir``, which is copied first so that neither its aliases nor its prediction log
change) is served twice on 127.0.0.1, two worker processes each:

* Keel: ``keel serve``, ``POST /v1/score`` with one JSON record;
* MLflow: a pyfunc written the way a team would without Keel ("models from code": the same
  LightGBM text and preprocessing, reasons from ``shap.TreeExplainer`` and the spec's texts,
  top 4 positive contributions), logged to a temporary SQLite store and served by
  ``mlflow models serve --env-manager local``, ``POST /invocations`` with
  ``{"dataframe_records": [record]}``.

Both get the same real rows of the UCI file, typed per the model's input contract. Before
any load, every row is sent to both servers and the answers must agree (probability to
1e-9, reason features in the same order). Each load is ``wrk`` after a short warm-up, bounded
by ``--seconds`` and by ``--max-requests``: 1 connection (p50, p99) and 16 connections
(requests/s, p99). The raw in-process call (Keel's ``ServedModel.score_records``, the
loaded pyfunc's ``predict`` on a one-row DataFrame) is timed too. ``wrk`` runs on the same
cores as the servers, for both sides alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from keel.models.artifact import KeelModel
from keel.registry.store import Registry
from keel.serving.loader import load_alias
from keel.serving.served import ServedModel

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "credit_default" / "keel.yaml"
DATA = ROOT / "examples" / "credit_default" / "data" / "UCI_Credit_Card.csv"
BIN = Path(sys.executable).parent  # the virtual environment's scripts: keel, mlflow, uvicorn
HOST = "127.0.0.1"
P50_TARGET_MS = 1.0
THROUGHPUT_TARGET = 10.0
STARTED = time.monotonic()

# The MLflow model, "models from code": MLflow copies this file into the model and runs it on load.
PYFUNC_SOURCE = '''\
"""The credit model with adverse-action reasons from SHAP, as an MLflow pyfunc."""

import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class CreditWithReasons(PythonModel):
    """Probability, decision at the model's threshold and the top 4 reasons per row."""

    def load_context(self, context) -> None:
        import shap
        from keel.models.artifact import KeelModel

        self.model = KeelModel.load(Path(context.artifacts["keel_model"]))
        self.booster = self.model.scorer.booster
        self.explainer = shap.TreeExplainer(self.booster)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[dict]:
        X = self.model.preprocessor.transform(model_input)
        probability = self.booster.predict(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's note that LightGBM binary output changed shape
            contributions = np.asarray(self.explainer.shap_values(X))
        order = np.argsort(-contributions, axis=1, kind="stable")[:, : self.model.top_k]
        return [
            {
                "probability": float(p),
                "decision": "adverse" if p >= self.model.threshold else "favourable",
                "reasons": [self._reason(X[row, j], j, contributions[row, j])
                            for j in order[row] if contributions[row, j] > 0],
            }
            for row, p in enumerate(probability)
        ]

    def _reason(self, value: float, j: int, contribution: float) -> dict:
        feature = self.model.features[j]
        return {
            "feature": feature,
            "text": self.model.reason_text(feature),
            "contribution": float(contribution),
            "value": None if np.isnan(value) else float(value),
        }


mlflow.models.set_model(CreditWithReasons())
'''

# wrk: rotate through the bodies; stop the thread after its share of the request cap.
WRK_SCRIPT = """\
local bodies = {{ {bodies} }}
local headers = {{ ["Content-Type"] = "application/json" }}
local sent, answered, cap = 0, 0, {cap}
request = function()
  sent = sent % #bodies + 1
  return wrk.format("POST", "{path}", headers, bodies[sent])
end
response = function(status, headers, body)
  answered = answered + 1
  if answered >= cap then wrk.thread:stop() end
end
"""


@dataclass(frozen=True)
class Load:
    """One bounded wrk load and what it measured."""

    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True)
class Side:
    """Everything measured for one server."""

    name: str
    in_process_ms: float
    one: Load
    sixteen: Load


@dataclass(frozen=True)
class Target:
    """What the server under test is served from."""

    project_dir: Path
    name: str
    version: int


def say(message: str) -> None:
    """A progress line with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


# the model ------------------------------------------------------------------------------
def prepare_project(source: Path | None, workdir: Path) -> Path:
    """A project folder of our own: a copy of ``source``, or the credit example trained afresh."""
    project = workdir / "project"
    if source is not None:
        shutil.copytree(
            source, project, ignore=shutil.ignore_patterns("predictions.db*")
        )  # its servers' log
        return project
    say(f"training the credit example into {project} (a few minutes; --project-dir skips this)")
    subprocess.run(
        [str(BIN / "keel"), "run", str(SPEC), "--project-dir", str(project), "--quiet"], check=True
    )
    return project


def crown(project: Path, name: str | None) -> Target:
    """Point the champion alias at the newest LightGBM version.

    The credit model is a candidate (some of its gates fail), so it could never be promoted;
    setting the alias directly bypasses governance, which is right for a benchmark only, and
    only on our own copy of the project.
    """
    registry = Registry.for_project(project)
    names = registry.model_names()
    if name is None and len(names) != 1:
        sys.exit(f"{project} registers {names}; name one with --model")
    name = name or names[0]
    lightgbm = [v.version for v in registry.versions(name) if v.tag("family") == "lightgbm"]
    if not lightgbm:
        sys.exit(
            f"model '{name}' has no LightGBM version; "
            "the MLflow side needs one for shap.TreeExplainer"
        )
    registry.set_alias(name, "champion", lightgbm[-1])
    return Target(project, name, lightgbm[-1])


def typed(value: Any, dtype: str) -> Any:
    """A CSV value as the contract types it: JSON ints for int columns.

    (The file writes some as 5e+05.)
    """
    if dtype == "int":
        return int(value)
    return float(value) if dtype == "float" else str(value)


def sample_records(model: KeelModel, rows: int) -> list[dict[str, Any]]:
    """``rows`` rows spread evenly through the data file, holding the contract's columns only."""
    contract: dict[str, dict[str, Any]] = model.metadata["contract"]
    frame = pd.read_csv(DATA, usecols=list(contract))
    step = max(len(frame) // rows, 1)
    picked = frame.iloc[::step].head(rows)
    return [
        {column: typed(row[column], spec["dtype"]) for column, spec in contract.items()}
        for _, row in picked.iterrows()
    ]


def log_pyfunc(model: KeelModel, workdir: Path, example: dict[str, Any]) -> tuple[str, str]:
    """Log the MLflow pyfunc into a fresh SQLite store; returns (tracking URI, model URI)."""
    import mlflow

    keel_dir = workdir / "keel_model"
    model.save(keel_dir)
    code = workdir / "credit_pyfunc.py"
    code.write_text(PYFUNC_SOURCE)
    tracking_uri = f"sqlite:///{workdir / 'mlflow-bench.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    # artifacts beside the store: a SQLite store's default artifact root is ./mlruns under the
    # working directory
    experiment = mlflow.create_experiment(
        "serving-benchmark", artifact_location=(workdir / "mlartifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="credit",
            python_model=str(code),
            artifacts={"keel_model": str(keel_dir)},
            input_example=pd.DataFrame([example]),
        )
    return tracking_uri, info.model_uri


# servers --------------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports nothing listens on now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server in its own process group (so that stopping it stops its workers too)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group; SIGKILL what is left of it.

    The SIGKILL comes once the server exits, or after 15 s.
    """
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(15)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180.0
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(
                f"server exited with {process.returncode}; its log:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - http://HOST, loopback
                if answer.status == 200:
                    say(f"{url} answers")
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    sys.exit(f"{url} not ready after {timeout:.0f} s; server log:\n{log.read_text()[-3000:]}")


def keel_server(target: Target, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``keel serve`` with two workers and no registry watching."""
    command = [
        str(BIN / "keel"),
        "serve",
        "--project-dir",
        str(target.project_dir),
        "--model",
        target.name,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "2",
        "--watch-seconds",
        "0",
    ]
    return start(command, log, dict(os.environ))


def mlflow_server(
    tracking_uri: str, model_uri: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """``mlflow models serve`` with two workers in this environment.

    It execs ``uvicorn`` from PATH.
    """
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        HOST,
        "-p",
        str(port),
        "--workers",
        "2",
    ]
    return start(command, log, env)


# agreement ------------------------------------------------------------------------------
def post(url: str, body: bytes) -> Any:
    """POST JSON, return the decoded answer."""
    request = urllib.request.Request(  # noqa: S310 - http://HOST, loopback
        url, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - http://HOST, loopback
        return json.loads(answer.read())


def check_agreement(
    keel_url: str, keel_bodies: list[bytes], mlflow_url: str, mlflow_bodies: list[bytes]
) -> None:
    """Each row: the same probability (to 1e-9) and reason features, in order, from both servers."""
    worst, differing = 0.0, 0
    for keel_body, mlflow_body in zip(keel_bodies, mlflow_bodies, strict=True):
        ours = post(keel_url, keel_body)
        theirs = post(mlflow_url, mlflow_body)["predictions"][0]
        worst = max(worst, abs(ours["probability"] - theirs["probability"]))
        differing += [r["feature"] for r in ours["reasons"]] != [
            r["feature"] for r in theirs["reasons"]
        ]
    say(
        f"agreement on {len(keel_bodies)} rows: max |probability difference| {worst:.1e}, "
        f"rows with different reason features {differing}"
    )
    if worst > 1e-9 or differing:
        sys.exit("the two servers disagree; the comparison would not be like for like")


# loads ----------------------------------------------------------------------------------
def lua_script(path: str, bodies: list[bytes], cap: int, folder: Path) -> Path:
    """The wrk script for one endpoint and its bodies."""
    script = folder / f"wrk-{path.strip('/').replace('/', '-')}.lua"
    quoted = ", ".join(f"[==[{body.decode()}]==]" for body in bodies)
    script.write_text(WRK_SCRIPT.format(bodies=quoted, cap=cap, path=path))
    return script


def milliseconds(text: str) -> float:
    """A wrk duration ('812.00us', '1.20ms', '2.01s') in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str, connections: int) -> Load:
    """The numbers of one wrk run."""

    def grab(pattern: str, default: str | None = None) -> str:
        found = re.search(pattern, output)
        if found is None and default is None:
            sys.exit(f"wrk output lacks /{pattern}/:\n{output}")
        return found.group(1) if found else str(default)

    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return Load(
        connections=connections,
        seconds=float(grab(r"requests in ([\d.]+)s")),
        requests=int(grab(r"(\d+) requests in")),
        requests_per_s=float(grab(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=milliseconds(grab(r"\n\s+50%\s+(\S+)")),
        p99_ms=milliseconds(grab(r"\n\s+99%\s+(\S+)")),
        non_2xx=int(grab(r"Non-2xx or 3xx responses: (\d+)", "0")),
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def wrk(url: str, script: Path, connections: int, seconds: float) -> str:
    """Run wrk once; its report."""
    threads = min(connections, 2)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout


def measure(
    url: str,
    path: str,
    bodies: list[bytes],
    connections: int,
    args: argparse.Namespace,
    folder: Path,
) -> Load:
    """Warm up, then one bounded load; a run with failed requests is reported loudly."""
    threads = min(connections, 2)
    cap = math.ceil(args.max_requests / threads)
    script = lua_script(path, bodies, cap, folder)
    wrk(url + path, script, connections, args.warmup)
    load = parse_wrk(wrk(url + path, script, connections, args.seconds), connections)
    if load.requests >= cap * threads:
        say(
            f"!!! {url}{path} reached --max-requests before --seconds; "
            "wrk divides by the full duration, "
            "so its requests/s is understated"
        )
    if load.non_2xx or load.socket_errors:
        say(
            f"!!! {url}{path} at {connections} connection(s): {load.non_2xx} non-2xx answers, "
            f"{load.socket_errors} socket errors; its figures are not clean"
        )
    say(
        f"{url}{path}, {connections} connection(s): {load.requests:,} requests, "
        f"{load.requests_per_s:,.0f}/s, "
        f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms"
    )
    return load


def median_ms(call: Callable[[Any], object], inputs: list[Any], repeats: int) -> float:
    """Median ms of ``call`` over ``repeats`` calls cycling through ``inputs``, after a warm-up."""
    for item in inputs:
        call(item)
    times = []
    for i in range(repeats):
        item = inputs[i % len(inputs)]
        start_at = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start_at)
    return statistics.median(times) * 1e3


# report ---------------------------------------------------------------------------------
def ratios(keel: Side, mlflow: Side) -> dict[str, float]:
    """Keel's p50 at 1 connection over its target; its 16-connection throughput over MLflow's."""
    return {
        "p50_over_target": keel.one.p50_ms / P50_TARGET_MS,
        "throughput_over_mlflow": keel.sixteen.requests_per_s / mlflow.sixteen.requests_per_s,
    }


def table(keel: Side, mlflow: Side) -> str:
    """The Markdown result table: Keel's advantage on each measure, and the two targets."""

    def row(label: str, ours: float, theirs: float, target: str = "") -> str:
        return f"| {label} | {ours:,.2f} | {theirs:,.2f} | {theirs / ours:.1f}x | {target} |"

    got = ratios(keel, mlflow)
    p50_met = "met" if got["p50_over_target"] <= 1 else "MISSED"
    speed_met = "met" if got["throughput_over_mlflow"] >= THROUGHPUT_TARGET else "MISSED"
    return "\n".join(
        [
            "| measure | Keel | MLflow | Keel better by | target |",
            "|---|---:|---:|---:|---|",
            row(
                "p50 ms, 1 connection",
                keel.one.p50_ms,
                mlflow.one.p50_ms,
                f"Keel <= {P50_TARGET_MS:g} ms: "
                f"{got['p50_over_target']:.2f}x the target, {p50_met}",
            ),
            row("p99 ms, 1 connection", keel.one.p99_ms, mlflow.one.p99_ms),
            f"| requests/s, 16 connections | {keel.sixteen.requests_per_s:,.0f} "
            f"| {mlflow.sixteen.requests_per_s:,.0f} "
            f"| {got['throughput_over_mlflow']:.1f}x "
            f"| Keel >= {THROUGHPUT_TARGET:g}x MLflow: {speed_met} |",
            row("p99 ms, 16 connections", keel.sixteen.p99_ms, mlflow.sixteen.p99_ms),
            row("in-process call, median ms", keel.in_process_ms, mlflow.in_process_ms),
            f"| requests (1 / 16 connections) | {keel.one.requests:,} / {keel.sixteen.requests:,} "
            f"| {mlflow.one.requests:,} / {mlflow.sixteen.requests:,} | | |",
            f"| non-2xx + socket errors | {failures(keel)} | {failures(mlflow)} | | 0 |",
        ]
    )


def failures(side: Side) -> int:
    """Failed requests over both loads of a side."""
    return sum(load.non_2xx + load.socket_errors for load in (side.one, side.sixteen))


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project-dir",
        type=Path,
        help="a project holding a trained credit model (copied, not changed)",
    )
    parser.add_argument("--model", help="registered model name (default: the project's only one)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured load")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="length of the warm-up before each load"
    )
    parser.add_argument(
        "--max-requests", type=int, default=500_000, help="most requests in one load"
    )
    parser.add_argument(
        "--rows", type=int, default=50, help="distinct data rows sent (all checked for agreement)"
    )
    parser.add_argument("--calls", type=int, default=500, help="in-process calls timed per side")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s loads, 1 s warm-ups, 100 calls"
    )
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.calls = 2.0, 1.0, 100
    return args


def serve_and_load(
    target: Target,
    mlflow_uris: tuple[str, str],
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, list[Load]]:
    """Start both servers, check that they agree, and put each under its two loads.

    The servers are stopped whatever happens.
    """
    keel_bodies = [json.dumps(record).encode() for record in records]
    mlflow_bodies = [json.dumps({"dataframe_records": [record]}).encode() for record in records]
    keel_port, mlflow_port = free_ports(2)
    keel_url, mlflow_url = f"http://{HOST}:{keel_port}", f"http://{HOST}:{mlflow_port}"
    servers = []
    try:
        servers.append(keel_server(target, keel_port, workdir / "keel.log"))
        servers.append(mlflow_server(*mlflow_uris, mlflow_port, workdir / "mlflow.log"))
        wait_ready(f"{keel_url}/readyz", servers[0], workdir / "keel.log")
        wait_ready(f"{mlflow_url}/ping", servers[1], workdir / "mlflow.log")
        check_agreement(
            f"{keel_url}/v1/score", keel_bodies, f"{mlflow_url}/invocations", mlflow_bodies
        )
        return {
            side: [
                measure(url, path, bodies, connections, args, workdir) for connections in (1, 16)
            ]
            for side, url, path, bodies in (
                ("keel", keel_url, "/v1/score", keel_bodies),
                ("mlflow", mlflow_url, "/invocations", mlflow_bodies),
            )
        }
    finally:
        for server in servers:
            stop(server)
        say("servers stopped")


def in_process(
    engine: ServedModel, model_uri: str, records: list[dict[str, Any]], calls: int
) -> tuple[float, float]:
    """Median ms of one record through Keel's engine and through the loaded MLflow pyfunc.

    The pyfunc gets the record as a one-row DataFrame.
    """
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(model_uri)
    frames = [pd.DataFrame([record]) for record in records]
    return (
        median_ms(lambda record: engine.score_records([record]), records, calls),
        median_ms(pyfunc.predict, frames, calls),
    )


def run(args: argparse.Namespace, workdir: Path) -> tuple[Side, Side]:
    """Prepare the model both ways, then measure both servers and both in-process calls."""
    target = crown(prepare_project(args.project_dir, workdir), args.model)
    engine = load_alias(Registry.for_project(target.project_dir), target.name)
    say(f"serving {target.name} version {target.version} as champion from {target.project_dir}")
    records = sample_records(engine.model, args.rows)
    mlflow_uris = log_pyfunc(engine.model, workdir, records[0])
    say(f"MLflow pyfunc logged as {mlflow_uris[1]}")
    loads = serve_and_load(target, mlflow_uris, records, args, workdir)
    keel_ms, mlflow_ms = in_process(engine, mlflow_uris[1], records, args.calls)
    return Side("keel", keel_ms, *loads["keel"]), Side("mlflow", mlflow_ms, *loads["mlflow"])


def quiet() -> None:
    """Loopback only: no MLflow telemetry (the servers inherit this), logging or progress bars."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow  # noqa: F401 - configures its logger on import; set the level after

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=r"Hint: Inferred schema contains integer column"
    )  # ints never miss here


def require(tool: str, package: str) -> None:
    """Stop with one line saying how to install ``tool`` when it is not on PATH."""
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is not installed: apt-get install {package}")


def main() -> None:
    """Run the benchmark and print (and optionally save) the results."""
    args = parse_args()
    require("wrk", "wrk")  # before minutes of training, not after
    quiet()
    with tempfile.TemporaryDirectory(prefix="keel-serving-bench-") as tmp:
        keel, mlflow = run(args, Path(tmp))
    print(
        f"\nloopback, 2 workers per server, {args.seconds:g} s per load "
        f"after {args.warmup:g} s warm-up, "
        f"{args.rows} rows rotated; wrk shares this machine's {os.cpu_count()} cores "
        "with the servers, both sides alike\n"
    )
    print(table(keel, mlflow))
    if failures(keel) or failures(mlflow):
        print("\n!!! some requests failed; see the table")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "keel": asdict(keel),
                    "mlflow": asdict(mlflow),
                    "ratios": ratios(keel, mlflow),
                    "targets": {
                        "p50_ms": P50_TARGET_MS,
                        "throughput_over_mlflow": THROUGHPUT_TARGET,
                    },
                    "seconds": args.seconds,
                    "rows": args.rows,
                    "cpus": os.cpu_count(),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
