"""Schemathesis against a live server: every phase, every check, no failure allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.fuzz
def test_schemathesis_finds_no_failure_against_live_server():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--max-examples", "25"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
