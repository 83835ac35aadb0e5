"""
oauthctl loads nothing of the daemon: only its wire schema, the standard
library, attrs and Twisted's AMP.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import contextlib, io, sys
from oauthd.ctl.command import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
print(code, " ".join(sorted(sys.modules)))
"""

FORBIDDEN = {"bcrypt", "klein", "werkzeug", "treq", "segno", "pyotp"}


def allowed(module: str) -> bool:
    if not module.startswith("oauthd"):
        return module.split(".")[0] not in FORBIDDEN
    return module in ("oauthd", "oauthd.locations", "oauthd.control") or any(
        module == package or module.startswith(package + ".")
        for package in ("oauthd.ctl", "oauthd.control.wire")
    )


@pytest.mark.parametrize(
    "argv, code",
    [(["--help"], 0), (["--socket", "/nonexistent/control.sock", "status"], 1)],
)
def test_oauthctl_loads_nothing_of_the_daemon(argv: list[str], code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
    )
    status, modules = done.stdout.split(" ", 1)
    assert int(status) == code
    assert [m for m in modules.split() if not allowed(m)] == []
    assert "oauthd.ctl.cli" in modules.split()
