"""Every shell command that the README and docs/ show runs as written, and every link between the README, docs/ and
the notes leads somewhere.

A command runs unless it says what it needs (`# needs ...`, after it, or on a comment line above it in its block): a
terminal, a free port, a model of your own, a GPU, a second machine, a download, minutes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backspace_cli.default_model import DEFAULT_MODEL

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "training" / "NOTES.md", ROOT / "bench" / "NOTES.md"]
# What the commands' folder holds before they run: the built-in model stands in for "your GGUF".
GIVEN = {"model.gguf": DEFAULT_MODEL}
# What a mark may say a command needs: what a test run cannot have, or another command's result.
CANNOT_HAVE = ("a terminal", "a free port", "port ", "your ", "minutes", "a second machine", "a GPU", "a network",
               "the server above", "the GGUF")
OUTPUT = re.compile(r"(?:>|-o|--plot|--tokenized|--answers)\s+([\w./-]+)")


def shell_lines(text: str) -> list[tuple[str, str | None]]:
    """Each ```sh line of `text`, continuation lines joined, with what it needs (None when it runs): its own
    `# needs` comment, or a `# needs` comment line above it in its block."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        block_needs = None
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("#"):
                block_needs = block_needs or line.partition("# needs ")[2] or None
                continue
            lines.append((line, line.partition("# needs ")[2] or block_needs))
    return lines


def commands(page: Path) -> list[str]:
    return [line for line, needs in shell_lines(page.read_text()) if needs is None]


def tour() -> str:
    return README.read_text().split("## A five-minute tour\n", 1)[1].split("\n## ", 1)[0]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_the_tour_has_commands_to_run_and_marks_the_rest():
    runs = [line for line, needs in shell_lines(tour()) if needs is None]
    assert sum(line.startswith("backspace ") or "| backspace " in line for line in runs) >= 5
    marked = [needs for _, needs in shell_lines(tour()) if needs]
    assert any("terminal" in needs for needs in marked) and any("your" in needs for needs in marked)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: str(page.relative_to(ROOT)))
def test_a_mark_names_something_the_tests_cannot_have(page):
    for line, needs in shell_lines(page.read_text()):
        assert needs is None or needs.startswith(CANNOT_HAVE), (page.name, line)


@pytest.mark.parametrize("page", [page for page in [README, *DOCS] if commands(page)],
                         ids=lambda page: str(page.relative_to(ROOT)))
def test_every_shown_command_exits_0_on_the_built_in_model(page, tmp_path):
    """One shell a line, in one folder per page, as a reader would type them: a file that one line writes, the
    next reads. A file a command names as its output exists afterwards."""
    for name, source in GIVEN.items():
        (tmp_path / name).symlink_to(source)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BACKSPACE_MODEL", None)
    for command in commands(page):
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
        assert "Error" not in result.stderr and "Traceback" not in result.stderr, (command, result.stderr)
        outputs = OUTPUT.findall(command.partition("#")[0])
        for output in outputs:
            assert (tmp_path / output).stat().st_size > 0, (command, output)
        if (command.startswith("backspace ") or "| backspace " in command) and not outputs:
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
