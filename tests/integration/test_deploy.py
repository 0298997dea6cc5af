"""The deploy files' commands work in this project (what the files declare:
tests/unit/test_deploy.py).

No Docker engine here: the files are parsed, their commands run against the test database, and
the image's install steps run in a fresh virtualenv (the `image` marker).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from kiosk import migrations
from kiosk.settings import _env_name
from tests.support import PROJECT_DIR, Process, child_env, free_port, wait_for
from tests.support.deploy import (
    command_env,
    compose,
    copy_into,
    dockerfile_cmd,
    dockerfile_stages,
    graceful_timeout,
    healthcheck_argv,
    railway,
    workdir,
)


def run(argv: list[str], env: dict[str, str], cwd: Path = PROJECT_DIR, timeout: float = 120):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- every command they run exists --------------------------------------------------------------


def deploy_commands() -> dict[str, list[str]]:
    services = compose()["services"]
    api, worker = railway("railway.json")["deploy"], railway("railway.worker.json")["deploy"]
    return {
        "compose migrate": services["migrate"]["command"],
        "compose worker": services["worker"]["command"],
        "compose payments worker": services["worker-payments"]["command"],
        "compose simulator": services["simulator"]["command"],
        "compose worker healthcheck": healthcheck_argv(services["worker"]["healthcheck"]["test"]),
        "railway api start": shlex.split(api["startCommand"])[2].split()[1:],  # exec uvicorn ...
        "railway pre-deploy": shlex.split(api["preDeployCommand"][0]),
        "railway worker start": shlex.split(worker["startCommand"]),
        "railway payments worker start": shlex.split(
            railway("railway.worker-payments.json")["deploy"]["startCommand"]
        ),
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
        deploys = [
            subprocess.Popen(argv, env=env, cwd=PROJECT_DIR, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        wait_for(
            lambda: holder.execute(waiting).fetchone()[0] == 2,
            timeout=60,
            what="both kiosk migrate to wait for the lock",
        )
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
        wait_for(
            lambda: (
                api.alive()
                and httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            ),
            timeout=60,
            what=f"the image's API command:\n{api.output()}",
        )
        check = healthcheck_argv(compose()["services"]["api"]["healthcheck"]["test"])
        assert run(check, api_env, timeout=30).returncode == 0
        assert run(check, command_env(env, PORT=str(free_port())), timeout=30).returncode != 0
    finally:
        api.stop()


@pytest.mark.parametrize("service", ["worker", "worker-payments"])
def test_worker_command_runs_passes_its_healthcheck_and_stops_gracefully(env, log_dir, service):
    worker_cmd = compose()["services"][service]["command"]
    worker_env = command_env(env)
    worker = Process("worker-cmd", worker_cmd, worker_env, log_dir)
    try:
        check = healthcheck_argv(compose()["services"][service]["healthcheck"]["test"])
        wait_for(
            lambda: worker.alive() and run(check, worker_env, timeout=30).returncode == 0,
            timeout=60,
            interval=0.5,
            what=f"the worker healthcheck:\n{worker.output()}",
        )
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
            result = run(
                ["/bin/sh", "-c", args], {**child_env(""), "PYTHON": python}, cwd=src, timeout=600
            )
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

    where = run(
        [python, "-c", "import kiosk, tasks, periodic; print(kiosk.__file__)"], env, app_dir
    )
    assert where.returncode == 0 and where.stdout.startswith(str(venv)), where
    # Every module and SQL file of every area is in the installed package, not only in the tree.
    site = Path(where.stdout.strip()).parent.parent

    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.suffix in (".py", ".sql") and "__pycache__" not in p.parts
        }

    for package in ("kiosk", "tasks"):
        assert files(PROJECT_DIR / package) == files(site / package), package
    for absent in ("pgserver", "pytest"):  # runtime dependencies only
        assert run([python, "-c", f"import {absent}"], env, app_dir).returncode != 0, absent

    migrate = run(
        shlex.split(railway("railway.json")["deploy"]["preDeployCommand"][0]), env, app_dir
    )
    assert migrate.returncode == 0, migrate.stderr
    assert (
        run(["procrastinate", "--app=tasks.app", "worker", "--help"], env, app_dir).returncode == 0
    )

    port = str(free_port())
    log = log_dir / "image-api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            dockerfile_cmd(),
            env={**env, "PORT": port},
            cwd=app_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        assert api.poll() is None, f"the installed API exited:\n{log.read_text()}"
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

    try:
        wait_for(ready, timeout=60, what="/readyz from the installed app")
    finally:
        api.terminate()
        api.wait(20)


# --- the monitoring profile ---------------------------------------------------------------------


def mounts(service: dict) -> dict[str, Path]:
    """A service's bind mounts of project files: container path -> host path (which must exist)."""
    found = {}
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = PROJECT_DIR / source
    return found


def test_monitoring_profile_runs_prometheus_and_grafana_on_the_kit():
    compose_file = compose()
    services = compose_file["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    for service in (prometheus, grafana):
        for host_path in mounts(service).values():
            assert host_path.exists(), host_path
            assert host_path.is_relative_to(PROJECT_DIR / "deploy" / "monitoring")

    # Prometheus reads the kit's config, whose rule file sits beside it, and scrapes the api
    # service with the token compose mounts as a secret from KIOSK_METRICS_TOKEN.
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "--config.file" in a)
    prom_mounts = mounts(prometheus)
    config = yaml.safe_load(prom_mounts[config_path].read_text())
    for rule_file in config["rule_files"]:
        mounted = prom_mounts[str(Path(config_path).parent / rule_file)]
        assert mounted == PROJECT_DIR / "deploy" / "monitoring" / rule_file
    (scrape,) = config["scrape_configs"]
    (secret,) = prometheus["secrets"]
    assert scrape["authorization"]["credentials_file"] == f"/run/secrets/{secret}"
    variable = compose_file["secrets"][secret]["environment"]
    assert variable == "KIOSK_METRICS_TOKEN" == _env_name("metrics_token")
    (targets,) = [c["targets"] for c in scrape["static_configs"]]
    assert targets == ["api:8000"] and "api" in services
    assert prometheus["depends_on"] == {"api": {"condition": "service_healthy"}}

    # Grafana: the datasource points at the prometheus service, the dashboard provider at the
    # mounted dashboards, and every panel uses that datasource.
    graf_mounts = mounts(grafana)
    provisioning = graf_mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "kiosk.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in services
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "kiosk.yml").read_text())[
        "providers"
    ]
    dashboards = graf_mounts[provider["options"]["path"]]
    board = json.loads((dashboards / "kiosk.json").read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == datasource["uid"] for p in panels)
