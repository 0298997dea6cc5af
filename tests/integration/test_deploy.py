"""The deploy files: what they declare, and that every command they run works in this project.

No Docker engine here: the files are parsed, their commands run against the test database, and
the image's install steps run in a fresh virtualenv (the `image` marker).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from kiosk import migrations
from kiosk.settings import Settings, _env_name
from tests.support.deploy import (
    command_env,
    compose,
    copy_into,
    dockerfile_stages,
    railway,
    workdir,
)
from tests.support import PROJECT_DIR, Process, child_env, free_port, wait_for

GRACEFUL = re.compile(r"--shutdown-graceful-timeout[= ](\d+)")
# Field names of Railway's config-as-code schema (railway.com/railway.schema.json) used or nearby.
RAILWAY_BUILD_KEYS = {"builder", "dockerfilePath", "watchPatterns", "buildCommand"}
RAILWAY_DEPLOY_KEYS = {
    "startCommand", "preDeployCommand", "healthcheckPath", "healthcheckTimeout",
    "restartPolicyType", "restartPolicyMaxRetries", "numReplicas", "multiRegionConfig",
    "drainingSeconds", "overlapSeconds", "sleepApplication", "cronSchedule",
}


def seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, f"expected a duration in seconds like '40s', got {value!r}"
    return int(match.group(1))


def graceful_timeout(command: list[str] | str) -> int:
    text = command if isinstance(command, str) else " ".join(command)
    match = GRACEFUL.search(text)
    assert match, f"the worker command sets no --shutdown-graceful-timeout: {text}"
    return int(match.group(1))


def healthcheck_argv(test: list[str]) -> list[str]:
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]


def run(argv: list[str], env: dict[str, str], cwd: Path = PROJECT_DIR, timeout: float = 120):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- what the files declare -------------------------------------------------------------------

def test_compose_declares_db_migrate_api_and_two_workers():
    services = compose()["services"]
    assert set(services) == {"db", "migrate", "api", "worker", "simulator"}

    db = services["db"]
    assert db["image"].startswith("postgres:")
    probe = healthcheck_argv(db["healthcheck"]["test"])
    assert probe[0] == "pg_isready"
    assert probe[probe.index("-h") + 1] == "127.0.0.1"  # TCP, not the socket

    migrate = services["migrate"]
    assert migrate["command"] == ["kiosk", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}

    for name in ("api", "worker"):
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

    simulator = services["simulator"]  # an optional profile for local demos
    assert simulator["profiles"] == ["demo"] and simulator["image"] == migrate["image"]
    assert simulator["command"][:2] == ["kiosk", "simulator"]
    webhook = simulator["command"][simulator["command"].index("--webhook-url") + 1]
    assert webhook == "http://api:8000/webhooks/mercadopago"
    assert simulator["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_railway_api_config():
    config = railway("railway.json")
    assert set(config["build"]) <= RAILWAY_BUILD_KEYS and set(config["deploy"]) <= RAILWAY_DEPLOY_KEYS
    assert config["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    deploy = config["deploy"]
    assert deploy["preDeployCommand"] == ["kiosk migrate"]
    assert deploy["healthcheckPath"] == "/readyz"
    assert deploy["restartPolicyType"] == "ON_FAILURE" and deploy["restartPolicyMaxRetries"] > 0
    # The same API command as the image's default, with Railway's PORT.
    assert shlex.split(deploy["startCommand"]) == dockerfile_cmd()


def test_railway_worker_config():
    config = railway("railway.worker.json")
    assert set(config["build"]) <= RAILWAY_BUILD_KEYS and set(config["deploy"]) <= RAILWAY_DEPLOY_KEYS
    assert config["build"] == railway("railway.json")["build"]  # the same image
    deploy = config["deploy"]
    assert "healthcheckPath" not in deploy  # workers serve no HTTP
    assert deploy["numReplicas"] == 2
    assert deploy["restartPolicyType"] == "ALWAYS"
    assert shlex.split(deploy["startCommand"]) == compose()["services"]["worker"]["command"]
    assert deploy["drainingSeconds"] > graceful_timeout(deploy["startCommand"])
    assert deploy["preDeployCommand"] == ["kiosk migrate"]  # never new code on an old schema


def dockerfile_cmd() -> list[str]:
    (cmd,) = dockerfile_stages()["runtime"].args("CMD")
    return json.loads(cmd)


def test_dockerfile_builds_in_a_builder_and_runs_slim_and_unprivileged():
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "runtime"]
    builder, runtime = stages["builder"], stages["runtime"]
    assert builder.base == runtime.base == "${PYTHON_IMAGE}"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim\b", (PROJECT_DIR / "Dockerfile").read_text(), re.M)

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


# --- every command they run exists --------------------------------------------------------------

def deploy_commands() -> dict[str, list[str]]:
    services = compose()["services"]
    api, worker = railway("railway.json")["deploy"], railway("railway.worker.json")["deploy"]
    return {
        "compose migrate": services["migrate"]["command"],
        "compose worker": services["worker"]["command"],
        "compose simulator": services["simulator"]["command"],
        "compose worker healthcheck": healthcheck_argv(services["worker"]["healthcheck"]["test"]),
        "railway api start": shlex.split(api["startCommand"])[2].split()[1:],  # exec uvicorn ...
        "railway pre-deploy": shlex.split(api["preDeployCommand"][0]),
        "railway worker start": shlex.split(worker["startCommand"]),
        "alembic": ["alembic"],
    }


@pytest.mark.parametrize("name", sorted(deploy_commands()))
def test_every_deploy_command_exists(name):
    argv = [arg.replace("${PORT:-8000}", "8000") for arg in deploy_commands()[name]]
    result = run([*argv, "--help"], command_env(child_env("postgresql://unused/none")))
    assert result.returncode == 0, f"{name}: {argv} --help failed:\n{result.stdout}{result.stderr}"
    assert "usage" in result.stdout.lower()


def test_migrate_command_runs_once_at_a_time(scratch_database, database_url):
    """Compose's migrate service and both Railway pre-deploy commands may start together."""
    url = scratch_database()
    env = command_env(child_env(url))
    argv = compose()["services"]["migrate"]["command"]
    waiting = (
        "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE locktype = "
        "'advisory' AND NOT granted AND starts_with(application_name, 'kiosk-migrate:')"
    )
    with psycopg.connect(url, autocommit=True) as holder:
        # A migration in progress: both deploys wait for it, then migrate one after the other.
        holder.execute("SELECT pg_advisory_lock(%s)", (migrations.MIGRATION_LOCK_KEY,))
        deploys = [subprocess.Popen(argv, env=env, cwd=PROJECT_DIR, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        wait_for(lambda: holder.execute(waiting).fetchone()[0] == 2, timeout=60,
                 what="both kiosk migrate to wait for the lock")
        assert holder.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None
        holder.execute("SELECT pg_advisory_unlock(%s)", (migrations.MIGRATION_LOCK_KEY,))
    for deploy in deploys:
        _, stderr = deploy.communicate(timeout=120)
        assert deploy.returncode == 0, stderr
    with psycopg.connect(url) as conn:
        (version,) = conn.execute(migrations.ALEMBIC_VERSION_QUERY).fetchone()
    assert version == migrations.head_revision()


def test_api_command_serves_readyz_and_passes_its_healthcheck(env, log_dir, database_url):
    port = str(free_port())
    api_env = command_env(env, PORT=port)
    api = Process("api-cmd", dockerfile_cmd(), api_env, log_dir)
    try:
        wait_for(lambda: api.alive() and httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                 .status_code == 200, timeout=60, what=f"the image's API command:\n{api.output()}")
        check = healthcheck_argv(compose()["services"]["api"]["healthcheck"]["test"])
        assert run(check, api_env, timeout=30).returncode == 0
        assert run(check, command_env(env, PORT=str(free_port())), timeout=30).returncode != 0
    finally:
        api.stop()


def test_worker_command_runs_passes_its_healthcheck_and_stops_gracefully(env, log_dir):
    worker_cmd = compose()["services"]["worker"]["command"]
    worker_env = command_env(env)
    worker = Process("worker-cmd", worker_cmd, worker_env, log_dir)
    try:
        check = healthcheck_argv(compose()["services"]["worker"]["healthcheck"]["test"])
        wait_for(lambda: worker.alive() and run(check, worker_env, timeout=30).returncode == 0,
                 timeout=60, interval=0.5, what=f"the worker healthcheck:\n{worker.output()}")
    finally:
        code = worker.stop(timeout=graceful_timeout(worker_cmd) + 5)
    assert code == 0, worker.output()


# --- the image's install steps, in a fresh virtualenv -----------------------------------------

@pytest.mark.image
def test_image_install_steps_give_a_working_app(tmp_path, scratch_database, database_url, log_dir):
    """The builder stage's COPY and RUN steps, then the runtime stage's files, outside Docker."""
    stages = dockerfile_stages()
    builder, runtime = stages["builder"], stages["runtime"]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")

    # Builder: COPY from the context, then each install step. The other RUN lines set up what
    # this test already has (a compiler, the virtualenv).
    copy_into(builder, tmp_path, workdir(builder))
    src = tmp_path / workdir(builder).lstrip("/")
    installs = 0
    for args in builder.args("RUN"):
        if "scripts/image-install" in args:
            result = run(["/bin/sh", "-c", args], {**child_env(""), "PYTHON": python}, cwd=src,
                         timeout=600)
            assert result.returncode == 0, f"{args}:\n{result.stdout}{result.stderr}"
            installs += 1
        else:
            assert args.startswith(("apt-get update", "python -m venv /opt/venv")), args
    assert installs == 2

    # Runtime: its files from the context in its WORKDIR, the virtualenv first on PATH.
    copy_into(runtime, tmp_path, workdir(runtime))
    app_dir = tmp_path / workdir(runtime).lstrip("/")
    url = scratch_database()
    env = {**child_env(url), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)

    where = run([python, "-c", "import kiosk, tasks, periodic; print(kiosk.__file__)"], env, app_dir)
    assert where.returncode == 0 and where.stdout.startswith(str(venv)), where
    # Every module and SQL file of every area is in the installed package, not only in the tree.
    site = Path(where.stdout.strip()).parent.parent
    for package in ("kiosk", "tasks"):
        files = lambda root: {p.relative_to(root) for p in root.rglob("*")  # noqa: E731
                              if p.suffix in (".py", ".sql") and "__pycache__" not in p.parts}
        assert files(PROJECT_DIR / package) == files(site / package), package
    for absent in ("pgserver", "pytest"):  # runtime dependencies only
        assert run([python, "-c", f"import {absent}"], env, app_dir).returncode != 0, absent

    migrate = run(shlex.split(railway("railway.json")["deploy"]["preDeployCommand"][0]), env, app_dir)
    assert migrate.returncode == 0, migrate.stderr
    assert run(["procrastinate", "--app=tasks.app", "worker", "--help"], env, app_dir).returncode == 0

    port = str(free_port())
    log = log_dir / "image-api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(dockerfile_cmd(), env={**env, "PORT": port}, cwd=app_dir,
                               stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        assert api.poll() is None, f"the installed API exited:\n{log.read_text()}"
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

    try:
        wait_for(ready, timeout=60, what="/readyz from the installed app")
    finally:
        api.terminate()
        api.wait(20)
