"""The deploy files: what they declare, parsed (their commands run in
tests/integration/test_deploy.py).
"""

from __future__ import annotations

import re
import shlex

from kiosk.settings import Settings, _env_name
from tests.support import PROJECT_DIR
from tests.support.deploy import (
    RAILWAY_BUILD_KEYS,
    RAILWAY_DEPLOY_KEYS,
    compose,
    dockerfile_cmd,
    dockerfile_stages,
    graceful_timeout,
    healthcheck_argv,
    railway,
    seconds,
    workdir,
)


def test_compose_declares_db_migrate_api_and_two_workers():
    services = compose()["services"]
    assert set(services) == {
        "db",
        "migrate",
        "api",
        "worker",
        "worker-payments",
        "simulator",
        "prometheus",
        "grafana",
    }

    db = services["db"]
    assert db["image"].startswith("postgres:")
    probe = healthcheck_argv(db["healthcheck"]["test"])
    assert probe[0] == "pg_isready"
    assert probe[probe.index("-h") + 1] == "127.0.0.1"  # TCP, not the socket

    migrate = services["migrate"]
    assert migrate["command"] == ["kiosk", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}

    for name in ("api", "worker", "worker-payments"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
        assert services[name]["image"] == migrate["image"]  # one image for every role
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert "@db:5432/" in services[name]["environment"]["DATABASE_URL"]

    api = services["api"]
    assert "command" not in api  # the image's default command is the API
    assert "/readyz" in " ".join(api["healthcheck"]["test"])

    worker = services["worker"]
    assert worker["command"][:3] == ["procrastinate", "--app=tasks.app", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker and "container_name" not in worker  # replicas can coexist
    assert seconds(worker["stop_grace_period"]) > graceful_timeout(worker["command"])
    assert worker["healthcheck"]["test"] == ["CMD", "kiosk", "worker-health"]

    # The payments queue has a worker of its own; the others take every queue (`default` too,
    # where jobs deferred before the queues split wait: docs/workers.md#queues).
    assert "--queues" not in " ".join(worker["command"])
    payments = services["worker-payments"]
    assert payments["command"] == [
        *worker["command"][:3],
        "--queues=payments",
        *worker["command"][3:],
    ]
    assert payments["deploy"]["replicas"] >= 1
    assert "ports" not in payments and "container_name" not in payments
    assert payments["stop_grace_period"] == worker["stop_grace_period"]
    assert payments["healthcheck"] == worker["healthcheck"]

    simulator = services["simulator"]  # an optional profile for local demos
    assert simulator["profiles"] == ["demo"] and simulator["image"] == migrate["image"]
    assert simulator["command"][:2] == ["kiosk", "simulator"]
    webhook = simulator["command"][simulator["command"].index("--webhook-url") + 1]
    assert webhook == "http://api:8000/webhooks/mercadopago"
    assert simulator["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_railway_api_config():
    config = railway("railway.json")
    assert (
        set(config["build"]) <= RAILWAY_BUILD_KEYS and set(config["deploy"]) <= RAILWAY_DEPLOY_KEYS
    )
    assert config["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    deploy = config["deploy"]
    assert deploy["preDeployCommand"] == ["kiosk migrate"]
    assert deploy["healthcheckPath"] == "/readyz"
    assert deploy["restartPolicyType"] == "ON_FAILURE" and deploy["restartPolicyMaxRetries"] > 0
    # The same API command as the image's default, with Railway's PORT.
    assert shlex.split(deploy["startCommand"]) == dockerfile_cmd()


def test_railway_worker_config():
    config = railway("railway.worker.json")
    assert (
        set(config["build"]) <= RAILWAY_BUILD_KEYS and set(config["deploy"]) <= RAILWAY_DEPLOY_KEYS
    )
    assert config["build"] == railway("railway.json")["build"]  # the same image
    deploy = config["deploy"]
    assert "healthcheckPath" not in deploy  # workers serve no HTTP
    assert deploy["numReplicas"] == 2
    assert deploy["restartPolicyType"] == "ALWAYS"
    assert shlex.split(deploy["startCommand"]) == compose()["services"]["worker"]["command"]
    assert deploy["drainingSeconds"] > graceful_timeout(deploy["startCommand"])
    assert deploy["preDeployCommand"] == ["kiosk migrate"]  # never new code on an old schema


def test_railway_payments_worker_config():
    """The same worker service as railway.worker.json, on the payments queue alone."""
    config = railway("railway.worker-payments.json")
    general = railway("railway.worker.json")
    assert config["build"] == general["build"]
    deploy, other = config["deploy"], general["deploy"]
    assert set(deploy) <= RAILWAY_DEPLOY_KEYS and deploy["numReplicas"] >= 1
    assert (
        shlex.split(deploy["startCommand"]) == compose()["services"]["worker-payments"]["command"]
    )
    for key in ("preDeployCommand", "drainingSeconds", "restartPolicyType"):
        assert deploy[key] == other[key], key
    assert deploy["drainingSeconds"] > graceful_timeout(deploy["startCommand"])


def test_dockerfile_builds_in_a_builder_and_runs_slim_and_unprivileged():
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "runtime"]
    builder, runtime = stages["builder"], stages["runtime"]
    assert builder.base == runtime.base == "${PYTHON_IMAGE}"
    assert re.search(
        r"^ARG PYTHON_IMAGE=python:3\.12-slim\b", (PROJECT_DIR / "Dockerfile").read_text(), re.M
    )

    # Dependencies are installed from pyproject.toml alone, before any source is copied.
    steps = [f"{name} {args}" for name, args in builder.instructions]
    deps = steps.index("RUN sh scripts/image-install deps")
    app = steps.index("RUN sh scripts/image-install app")
    copied_before_deps = " ".join(s for s in steps[:deps] if s.startswith("COPY"))
    assert copied_before_deps == "COPY pyproject.toml ./ COPY scripts/image-install scripts/"
    assert deps < steps.index("COPY kiosk/ kiosk/") < app

    # The runtime stage: no package manager, no compiler, not root, the migrations beside it.
    runtime_steps = " ".join(args for _, args in runtime.instructions)
    assert "apt-get" not in runtime_steps and "build-essential" not in runtime_steps
    assert runtime.args("USER") == ["kiosk"]
    assert runtime.args("COPY")[0] == "--from=builder /opt/venv /opt/venv"
    assert {"alembic.ini ./", "alembic/ alembic/"} <= set(runtime.args("COPY"))
    assert workdir(runtime) == "/app"
    assert dockerfile_cmd()[:2] == ["/bin/sh", "-c"]
    assert "uvicorn kiosk.app:app --host 0.0.0.0" in dockerfile_cmd()[2]


def test_dockerignore_keeps_secrets_and_bulk_out_of_the_build_context():
    ignored = set((PROJECT_DIR / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv/", ".kiosk/", "tests/"} <= ignored
    for needed in ("pyproject.toml", "README.md", "kiosk/", "tasks/", "alembic/", "scripts/"):
        assert needed not in ignored


def test_env_example_lists_every_setting():
    text = (PROJECT_DIR / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = {_env_name(name) for name in Settings.model_fields} - listed
    assert not missing, f".env.example does not list {sorted(missing)}"
    # Optional settings show their defaults.
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.M))
    for name, field in Settings.model_fields.items():
        if not field.is_required() and _env_name(name) in values:
            assert values[_env_name(name)] == str(field.default), _env_name(name)
