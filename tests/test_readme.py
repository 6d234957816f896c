"""The README's commands are the ones a user types: they must do what it says."""
from __future__ import annotations

import re

from sim.bot import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = [line for block in re.findall(r"```bash\n(.*?)```", README, re.S)
            for line in block.splitlines() if line.strip()]


def test_every_command_keeps_the_documented_precedence():
    """A flag beats the shell, which beats .env, which beats the default, in every
    command the README gives: `pipenv run` must not let .env override the shell."""
    runs = [c for c in COMMANDS if "pipenv run" in c]
    assert runs
    assert all("PIPENV_DONT_LOAD_ENV=1 pipenv run" in c for c in runs), runs


def test_ci_runs_the_readmes_test_command():
    """CI calls the same test command the README gives (so a green CI proves it)."""
    marker = README.index("<!-- test-command -->")
    command = README[marker:].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert "pytest" in command
    assert "README.md" in (ROOT / ".ci" / "run").read_text()
