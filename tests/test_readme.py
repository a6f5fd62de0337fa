"""Documentation kept honest: every setting is in the README's table, and vice versa."""

from __future__ import annotations

import re
from pathlib import Path

from cadre.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme_table():
    documented = set(re.findall(r"^\| `(CADRE_[A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    settings = {f"CADRE_{name.upper()}" for name in Settings.model_fields}
    assert documented == settings


def test_readme_starts_with_the_two_setup_commands():
    commands = re.findall(r"^make (\w+)", README.split("\n\n")[1], flags=re.MULTILINE)
    assert commands == ["serve", "test"]
