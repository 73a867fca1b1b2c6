"""The Dockerfile: hadolint-clean, multi-stage from uv.lock, non-root, health-checked; the image
built with podman and scoring one record the way `keel serve` does outside it.

Building needs podman, runc and debootstrap (Debian packages) and takes minutes cold (the
venv is ~1.2 GB), so it runs only when KEEL_TEST_IMAGE=1; then anything missing is a failure,
not a skip. No image registry is reachable here, so the test makes the two base images the
Dockerfile names from local material: Python from Debian packages with debootstrap, and uv
from the uv binary that set up this checkout. Both are passed as build arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from factories import loans_spec, make_loans, write_project

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
BASE = "localhost/keel-test/python:3.11-bookworm"
UV = "localhost/keel-test/uv:0.13.10"
IMAGE = "localhost/keel:test"
# The sandbox lacks CAP_SYS_RESOURCE, so podman's default nofile/nproc ulimits cannot be set,
# and its cgroups are a v1/v2 hybrid that crun refuses; runc runs there with no ulimits set.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'


def _stages(text: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), per stage."""
    joined = re.sub(r"\\\n\s*", " ", text)
    stages: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _hadolint(path: Path) -> list[dict[str, object]]:
    found = subprocess.run(
        [
            str(HADOLINT),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )
    findings: list[dict[str, object]] = json.loads(found.stdout or "[]")
    assert (found.returncode != 0) == bool(findings), found.stderr
    return findings


def test_the_dockerfile_is_hadolint_clean() -> None:
    assert _hadolint(DOCKERFILE) == []
    # An ignored rule must say why on the line above it.
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number > 0 and lines[number - 1].startswith("#"), line


def test_hadolint_finds_what_is_wrong_in_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install gcc\nCMD keel serve\n")
    codes = {finding["code"] for finding in _hadolint(bad)}
    assert {"DL3006", "DL3008", "DL3014", "DL3025"} <= codes


def test_the_dockerfile_builds_from_the_lock_and_runs_keel_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    stages = _stages(text)
    assert len(stages) >= 3  # uv, build, final
    build = next(stage for stage in stages if stage[0].endswith(" AS build"))
    syncs = [line for line in build if "uv sync" in line]
    assert syncs and all("--frozen" in line and "--no-dev" in line for line in syncs)
    final = stages[-1]
    assert final[0].split()[1] == build[0].split()[1] == "${PYTHON_IMAGE}"  # the same Python
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11[\w.-]*-slim-bookworm$", text, re.MULTILINE)
    assert re.search(r"^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+$", text, re.MULTILINE)
    # The final stage takes only the venv from the build and installs no toolchain.
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/keel/venv /opt/keel/venv"]
    assert not re.search(r"\b(apt-get|gcc|g\+\+|build-essential|make|uv)\b", " ".join(final[1:]))
    (user,) = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so Kubernetes' runAsNonRoot can check it
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "KEEL_HEALTHCHECK_URL" in health
    assert "KEEL_HEALTHCHECK_URL=http://127.0.0.1:8000/livez" in " ".join(final)
    assert 'ENTRYPOINT ["keel"]' in final
    (cmd,) = [line for line in final if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD "))[:1] == ["serve"]
    assert "EXPOSE 8000 8700" in final


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore's patterns leave ``path`` out: the last pattern that matches it or
    one of its parent folders decides, `!` lets back in (Docker's rules)."""
    parts = path.split("/")
    verdict = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        body = pattern.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not keep
    return verdict


def test_dockerignore_sends_only_the_source_and_lock_to_the_build() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("pyproject.toml", "uv.lock", "README.md", "src/keel/cli/main.py"):
        assert not _ignored(patterns, kept), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        ".uv/bin/uv",
        ".keel/keys/audit.key",
        "examples/credit_default/.keel/mlflow.db",
        "examples/credit_default/data/UCI_Credit_Card.csv",
        "src/keel/__pycache__/spec.cpython-311.pyc",
        "src/keel/explain/__pycache__/treeshap._explain_row-356.py311.1.nbc",
        ".mypy_cache/3.11/keel.json",
        "tests/conftest.py",
    ):
        assert _ignored(patterns, left_out), left_out


# --- building and running the image (KEEL_TEST_IMAGE=1) ---------------------------------


def _podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr[-4000:]}")
    return done.stdout.strip()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Keel image, built with podman from the Dockerfile on local base images."""
    if os.environ.get("KEEL_TEST_IMAGE") != "1":
        pytest.skip("builds a 1.4 GB image in minutes: run with KEEL_TEST_IMAGE=1")
    missing = [tool for tool in ("podman", "runc", "debootstrap") if not shutil.which(tool)]
    if missing:
        pytest.fail(
            f"KEEL_TEST_IMAGE=1 needs {missing}: apt-get install -y podman runc debootstrap"
        )
    work = tmp_path_factory.mktemp("image")
    conf = work / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    patched = pytest.MonkeyPatch()
    patched.setenv("CONTAINERS_CONF", str(conf))
    try:
        if subprocess.run(["podman", "image", "exists", BASE]).returncode != 0:
            _debian_python(work / "rootfs")
        if subprocess.run(["podman", "image", "exists", UV]).returncode != 0:
            # imported once: a new import is a new image, which would void every cached layer
            uv = shutil.which("uv") or str(ROOT / ".uv" / "bin" / "uv")
            (work / "uv").mkdir()
            shutil.copy2(uv, work / "uv" / "uv")
            tar = subprocess.run(["tar", "-C", str(work / "uv"), "-c", "uv"], capture_output=True)
            subprocess.run(["podman", "import", "-", UV], input=tar.stdout, check=True)
        cache = Path.home() / ".cache" / "uv"
        cache.mkdir(parents=True, exist_ok=True)
        _podman(
            "build",
            "--format=docker",  # keeps the HEALTHCHECK, which OCI images cannot hold
            "--network=host",
            f"--volume={cache}:/root/.cache/uv",
            f"--build-arg=PYTHON_IMAGE={BASE}",
            f"--build-arg=UV_IMAGE={UV}",
            f"--tag={IMAGE}",
            str(ROOT),
            timeout=1200,
        )
        yield IMAGE
    finally:
        patched.undo()


def _debian_python(rootfs: Path) -> None:
    """The stand-in for python:3.11-slim-bookworm: Debian bookworm's Python 3.11, imported."""
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,ca-certificates",
            "bookworm",
            str(rootfs),
            "http://deb.debian.org/debian",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    # This machine's own certificate authorities (an egress proxy's), so uv reaches PyPI.
    for ca in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
    subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True)
    tar = subprocess.run(["tar", "-C", str(rootfs), "-c", "."], capture_output=True, check=True)
    subprocess.run(
        ["podman", "import", "--change", "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]
        + ["-", BASE],
        input=tar.stdout,
        check=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_image_serves_the_champion_like_keel_serve(image: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from keel.lifecycle.run import run_project
    from keel.registry.governance import Governance
    from keel.serving.app import create_app
    from keel.serving.loader import load_alias
    from keel.spec import load_spec

    from people import crown, enrol

    spec = loans_spec("data.csv", tuning={"trials": 1}, models={"families": ["logistic"]})
    spec_path = write_project(tmp_path / "loans", make_loans(rows=600), spec)
    project = spec_path.parent / ".keel"
    people = enrol(project)
    run_project(load_spec(spec_path), project_dir=project, principal=people.dev, with_card=False)
    crown(people, "loans", 1)
    record = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}
    local = TestClient(
        create_app(load_alias(Governance.for_project(project, writer=False), "loans"))
    )
    expected = local.post("/v1/score", json=record).json()

    config = json.loads(_podman("image", "inspect", image))[0]["Config"]
    assert config["User"] == "10001:10001"
    no_tools = _podman(
        "run", "--rm", "--entrypoint=sh", image, "-c", "command -v gcc cc make uv", check=False
    )
    assert no_tools == "", f"build tools in the final image: {no_tools}"
    subprocess.run(["chown", "-R", "10001:10001", str(tmp_path)], check=True)
    port = _free_port()
    name = f"keel-test-{port}"
    _podman(
        "run",
        "--detach",
        f"--name={name}",
        "--network=host",
        f"--volume={tmp_path}:{tmp_path}",  # the registry holds the artifacts' absolute paths
        f"--env=KEEL_HEALTHCHECK_URL=http://127.0.0.1:{port}/livez",
        image,
        *("serve", f"--spec={spec_path}", "--host=127.0.0.1", f"--port={port}"),
    )
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, _podman("logs", name, check=False)
            time.sleep(0.5)
        answer = httpx.post(f"{base}/v1/score", json=record).json()
        assert _podman("healthcheck", "run", name, check=False) == ""  # exit 0: healthy
        _podman("stop", "--time=30", name)
        state = json.loads(_podman("inspect", name))[0]["State"]
    finally:
        _podman("rm", "--force", name, check=False)
    answer.pop("request_id"), expected.pop("request_id")
    assert answer == expected  # the same probability, decision and reasons, bit for bit
    assert state["ExitCode"] == 0  # SIGTERM drained and stopped cleanly
