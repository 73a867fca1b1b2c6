# Keel in a container: `keel serve` (the scoring API, port 8000) by default, and
# `keel server` (the governance service, port 8700) one argument away:
#   docker build -t keel:0.1.0 .
#   docker run -p 8000:8000 -v "$PWD/project:/srv/keel" keel:0.1.0
#   docker run -p 8700:8700 -v "$PWD/project:/srv/keel" \
#     -e KEEL_HEALTHCHECK_URL=http://127.0.0.1:8700/livez \
#     keel:0.1.0 server --spec /srv/keel/keel.yaml --host 0.0.0.0
# The base images are build arguments so that a machine without a registry can build from
# local stand-ins (tests/deploy/test_container.py does); both are pinned by tag.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.10

FROM ${UV_IMAGE} AS uv

# Build stage: the virtual environment, exactly as uv.lock pins it, without the dev group.
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/keel/venv
WORKDIR /build
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --extra s3 --no-install-project
COPY README.md ./
COPY src ./src
RUN uv sync --frozen --no-dev --extra s3 --no-editable

# Final stage: the same Python, the venv (Keel's source is installed in it), a non-root user.
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /srv/keel --create-home \
        --shell /usr/sbin/nologin keel
COPY --from=build /opt/keel/venv /opt/keel/venv
# Caches go to /tmp so the root filesystem can be mounted read-only (numba's compiled TreeSHAP
# kernels, matplotlib's font cache). KEEL_HEALTHCHECK_URL is read by the HEALTHCHECK only.
ENV PATH=/opt/keel/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    KEEL_HEALTHCHECK_URL=http://127.0.0.1:8000/livez
WORKDIR /srv/keel
USER 10001:10001
EXPOSE 8000 8700
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['KEEL_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["keel"]
CMD ["serve", "--spec", "/srv/keel/keel.yaml", "--host", "0.0.0.0", "--port", "8000"]
