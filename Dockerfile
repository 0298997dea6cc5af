# One image for both roles: the API (the default command) and procrastinate workers, which run
# the same image with `procrastinate --app=tasks.app worker ...`. See docs/deploy.md.
# The install steps live in scripts/image-install; tests/integration/test_deploy.py runs them too.
ARG PYTHON_IMAGE=python:3.12-slim

# --- builder: a virtualenv holding the runtime dependencies and the kiosk package -------------
FROM ${PYTHON_IMAGE} AS builder
# A compiler for any dependency without a wheel for this platform; it stays in this stage.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PYTHON=/opt/venv/bin/python \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when it changes.
COPY pyproject.toml ./
COPY scripts/image-install scripts/
# Optional extras (RUN sees the build arg as a variable): `docker build --build-arg
# KIOSK_EXTRAS=otel .` adds OpenTelemetry tracing.
ARG KIOSK_EXTRAS=""
RUN sh scripts/image-install deps
# Then the code: a source change rebuilds only this small layer.
COPY README.md periodic.py ./
COPY kiosk/ kiosk/
COPY tasks/ tasks/
RUN sh scripts/image-install app

# --- runtime: the virtualenv and the migrations; no compiler, no pip cache, not root ----------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 kiosk \
 && useradd --system --uid 10001 --gid kiosk --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin kiosk
COPY --from=builder /opt/venv /opt/venv
# JSON log lines (one object per line, docs/observability.md): what log collectors read.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KIOSK_LOG_FORMAT=json
# kiosk migrate, alembic and /readyz look for alembic/ in the working directory.
WORKDIR /app
COPY alembic.ini ./
COPY alembic/ alembic/
USER kiosk
EXPOSE 8000
# PORT is set by Railway; uvicorn trusts X-Forwarded-* only from FORWARDED_ALLOW_IPS (default
# 127.0.0.1): set it to the proxy's address, or * where only the proxy can reach the container.
CMD ["/bin/sh", "-c", "exec uvicorn kiosk.app:app --host 0.0.0.0 --port ${PORT:-8000} --proxy-headers"]
