# syntax=docker/dockerfile:1.7
# talon-bridge worker image.
#
#   docker buildx build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg SOURCE=https://github.com/ORG/talon-bridge -t REGISTRY/talon-bridge:0.1.0 .
#
# `make release` writes the same as a recipe, dist/release/docker-bake.json (see
# docs/deployment.md).
#
# Builder and runtime use the same Python image, so the virtualenv copied from the builder finds
# its interpreter at the same path. Dependencies come only from uv.lock.
#
# The base is pinned by digest, so a rebuild of the same release gets the same base. To move to
# the current python:3.11-slim-bookworm (security updates), print its index digest and paste it
# below, then rebuild and test:
#
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'

ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
ARG UV_VERSION=0.13.8

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first, in their own layer: it changes only when uv.lock does. The `otlp` extra
# (OpenTelemetry SDK and OTLP/HTTP exporter) lets OTEL_TRACES_EXPORTER=otlp switch spans on.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --extra otlp --no-install-project
COPY pyproject.toml uv.lock README.md ./
COPY schemas ./schemas
COPY bridge ./bridge
# The project itself as a regular (non-editable) install: the runtime needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra otlp --no-editable

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.0.0+local
ARG REVISION=unknown
ARG SOURCE=unknown
ARG TINI_VERSION=0.19.0-1+b3
LABEL org.opencontainers.image.title="talon-bridge" \
      org.opencontainers.image.description="Kafka to Talon.One bridge worker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# tini runs as PID 1: it forwards SIGTERM to the worker (which then drains) and reaps zombies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 bridge \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bridge

COPY --from=builder /app/.venv /app/.venv

# Nothing is written outside /tmp, so the root filesystem can be mounted read-only.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BRIDGE_METRICS_PORT=9100

WORKDIR /tmp
USER 10001:10001
EXPOSE 9100
ENTRYPOINT ["tini", "--", "talon-bridge"]
CMD ["run"]
