"""Reading the deploy files in tests: the Dockerfile's stages, compose, Railway configs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from tests.support.processes import PROJECT_DIR

# The project's own virtualenv: `kiosk`, `procrastinate`, `uvicorn`, `python`, as an image has.
VENV_BIN = Path(sys.executable).parent


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages(path: Path = PROJECT_DIR / "Dockerfile") -> dict[str, Stage]:
    """The stages of a Dockerfile by name, instructions with continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        lines.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((instruction, args.strip()))
    return stages


def copy_into(stage: Stage, root: Path, workdir: str) -> None:
    """Do the stage's `COPY` lines from the build context (not `--from`) under `root`."""
    for args in stage.args("COPY"):
        words = shlex.split(args)
        if any(word.startswith("--from") for word in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        *sources, dest = words
        target = root / PurePosixPath(workdir, dest).relative_to("/")
        for source in sources:
            src = PROJECT_DIR / source
            if src.is_dir():
                shutil.copytree(
                    src,
                    target,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                into = target if dest.endswith("/") or len(sources) > 1 else target.parent
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, into / src.name if into == target else target)


def workdir(stage: Stage) -> str:
    dirs = stage.args("WORKDIR")
    assert len(dirs) == 1, f"stage {stage.name}: expected one WORKDIR, got {dirs}"
    return dirs[0]


def compose() -> dict:
    return yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())


def railway(name: str) -> dict:
    return json.loads((PROJECT_DIR / name).read_text())


def command_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    """`env` with the project's virtualenv first on PATH, as the image's PATH has /opt/venv/bin."""
    return {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


GRACEFUL = re.compile(r"--shutdown-graceful-timeout[= ](\d+)")
# Field names of Railway's config-as-code schema (railway.com/railway.schema.json) used or nearby.
RAILWAY_BUILD_KEYS = {"builder", "dockerfilePath", "watchPatterns", "buildCommand"}
RAILWAY_DEPLOY_KEYS = {
    "startCommand",
    "preDeployCommand",
    "healthcheckPath",
    "healthcheckTimeout",
    "restartPolicyType",
    "restartPolicyMaxRetries",
    "numReplicas",
    "multiRegionConfig",
    "drainingSeconds",
    "overlapSeconds",
    "sleepApplication",
    "cronSchedule",
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


def dockerfile_cmd() -> list[str]:
    (cmd,) = dockerfile_stages()["runtime"].args("CMD")
    return json.loads(cmd)
