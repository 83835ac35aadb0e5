"""
The package type-checks under mypy --strict with the zope plugin (setup.cfg).
"""

from __future__ import annotations

from pathlib import Path

from mypy import api


def test_mypy_strict() -> None:
    repo = Path(__file__).resolve().parent.parent
    stdout, stderr, status = api.run(["--config-file", str(repo / "setup.cfg")])
    assert status == 0, stdout + stderr
