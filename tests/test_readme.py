"""The commands of the README and of docs/ are the ones a user types: they must
do what they say."""
from __future__ import annotations

import re

from sim.bot import ROOT

README = (ROOT / "README.md").read_text()
PAGES = [README, *(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))]
COMMANDS = [line for page in PAGES for block in re.findall(r"```bash\n(.*?)```", page, re.S)
            for line in block.splitlines() if line.strip()]


def test_every_command_keeps_the_documented_precedence():
    """A flag beats the shell, which beats .env, which beats the default, in every
    command the README (and docs/) gives: `pipenv run` must not let .env override
    the shell."""
    runs = [c for c in COMMANDS if "pipenv run" in c]
    assert runs
    assert all("PIPENV_DONT_LOAD_ENV=1 pipenv run" in c for c in runs), runs


def test_ci_runs_the_readmes_test_command():
    """CI calls the same test command the README gives (so a green CI proves it)."""
    marker = README.index("<!-- test-command -->")
    command = README[marker:].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert "pytest" in command
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_short_and_links_every_page_of_docs():
    """The README is read in ten minutes (at most 300 lines); everything deeper is
    one page of docs/ a topic, each linked from it, and every link resolves."""
    assert len(README.splitlines()) <= 300
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= set(re.findall(r"\(docs/([\w-]+\.md)\)", README))
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for link in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / link).exists(), f"{page.name}: {link}"
