"""The README's tour runs as written, and every link between the README, docs/ and the notes leads somewhere.

A tour command runs unless it says what it needs (`# needs ...`, after it or on the line before it): a
terminal, a free port, a fine-tuned model of your own, a GPU, a second machine."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "training" / "NOTES.md", ROOT / "bench" / "NOTES.md"]


def tour_commands() -> list[str]:
    """The tour's shell lines in order, continuation lines joined, each one marked `# needs` left out."""
    tour = README.read_text().split("## A five-minute tour\n", 1)[1].split("\n## ", 1)[0]
    commands, needs = [], False
    for block in re.findall(r"```sh\n(.*?)```", tour, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("# "):
                needs = line.startswith("# needs")
                continue
            if not needs and "# needs" not in line:
                commands.append(line)
            needs = False
    return commands


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_tour_has_commands_to_run_and_marks_the_rest():
    commands = tour_commands()
    assert sum(command.startswith("backspace ") or "| backspace " in command for command in commands) >= 5
    marked = re.findall(r"# needs [^\n]+", README.read_text())
    assert any("terminal" in mark for mark in marked) and any("fine-tuned" in mark for mark in marked)


def test_every_tour_command_exits_0_on_the_built_in_model(tmp_path):
    """One shell in one folder, as a reader would type them: a file that one line writes, the next reads."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BACKSPACE_MODEL", None)
    for command in tour_commands():
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "Error" not in result.stderr, (command, result.stderr)
        if "backspace " in command and ">" not in command:
            assert result.stdout.strip(), command


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"
