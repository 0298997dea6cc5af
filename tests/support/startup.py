"""Start-up checks: a Python process that imports the app with a given environment, nothing else."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import PROJECT_DIR

# The smallest environment the app starts with (the database is never reached by an import).
VALID = {
    "DATABASE_URL": "postgresql://127.0.0.1:1/none",
    "KIOSK_ADMIN_TOKEN": "x" * 20,
    "MP_ACCESS_TOKEN": "token",
    "MP_WEBHOOK_SECRET": "secret",
    "PATH": "/usr/bin:/bin",
}


def start_api(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`import kiosk.app` in a child with exactly `env`: its exit status and its stderr."""
    return subprocess.run(
        [sys.executable, "-c", "import kiosk.app"],
        env=env,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
