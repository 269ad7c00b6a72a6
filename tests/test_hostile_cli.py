"""What a stranger can hand the command line: an output named as an input, bytes that are not UTF-8, JSON no
reader should take, a directory where a file goes, SIGTERM mid-write and Ctrl-C at the first or last moment.
Each is one line on stderr and a non-zero exit, never a traceback; no input is modified, no partial file stays.
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from backspace_cli.cli.main import main
from backspace_convert.atomic import PARTIAL

SAMPLES = '{"prompt": "What is 2+3?", "response": "5"}\n{"prompt": "add 7 and 15", "response": "22"}\n'
TASKS = '{"prompt": "What is 2+3?", "answer": "5"}\n'
NOT_UTF8 = b"\xff\xfe\x00\x80\xc3"


def backspace(*args, **kwargs) -> subprocess.CompletedProcess:
    """The real program in a process of its own; args may be bytes, as a shell passes them."""
    argv = [arg if isinstance(arg, bytes) else str(arg) for arg in args]
    return subprocess.run([sys.executable, "-m", "backspace_cli", *argv], capture_output=True, timeout=300, **kwargs)


def invoke(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def one_line(stderr: str | bytes) -> str:
    """The error's text, once it is checked to be a single `Error: ` line."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    assert text.startswith("Error: ") and text.count("\n") == 1 and "Traceback" not in text, text
    return text.removeprefix("Error: ").rstrip("\n")


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    samples, tasks = tmp_path / "samples.jsonl", tmp_path / "tasks.jsonl"
    samples.write_text(SAMPLES)
    tasks.write_text(TASKS)
    return {"samples": samples, "tasks": tasks}


def partials(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.endswith(PARTIAL)]


# An output named as an input

def named(how: str, source: Path) -> Path:
    """A name for `source`: itself, a symlink to it, or a hard link to it."""
    if how == "same path":
        return source
    other = source.with_name(f"{how.replace(' ', '-')}-{source.name}")
    (other.symlink_to if how == "symlink" else other.hardlink_to)(source)
    return other


# (the command's arguments with OUT for the output, the input it would overwrite)
OVERWRITES = {
    "synth -o": (["synth", "{samples}", "-o", "OUT", "-q"], "samples"),
    "synth --tokenized": (["synth", "{samples}", "-o", "{tmp}/out.jsonl", "--tokenized", "OUT",
                           "--tokenizer", "{model}", "-q"], "samples"),
    "synth --tokenized over its tokenizer": (["synth", "{samples}", "-o", "{tmp}/out.jsonl", "--tokenized", "OUT",
                                              "--tokenizer", "{model}", "-q"], "model"),
    "eval --answers": (["eval", "{tasks}", "-m", "{model}", "-n", 2, "--answers", "OUT"], "tasks"),
    "eval --answers over its model": (["eval", "{tasks}", "-m", "{model}", "-n", 2, "--answers", "OUT"], "model"),
    "convert -o": (["convert", "{model}", "-o", "OUT", "--force"], "model"),
}


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("command", list(OVERWRITES))
def test_an_output_named_as_an_input_is_refused_and_the_input_kept(command, how, tmp_path, inputs,
                                                                   tiny_llama_without_delete_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(tiny_llama_without_delete_path.read_bytes())
    files = {**inputs, "model": model}
    args, overwritten = OVERWRITES[command]
    source = files[overwritten]
    target = named(how, source)
    before = source.read_bytes()
    values = {name: str(path) for name, path in files.items()} | {"tmp": str(tmp_path)}
    result = invoke(*(str(arg).format(**values) if arg != "OUT" else target for arg in args))
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"the output would overwrite the input {source}: the input is never modified"
    assert source.read_bytes() == before and partials(tmp_path) == []


def test_synth_refuses_to_write_over_the_file_on_its_standard_input(inputs):
    samples = inputs["samples"]
    with open(samples, "rb") as stdin:
        result = backspace("synth", "-", "-o", samples, "-q", stdin=stdin)
    assert result.returncode == 1
    assert one_line(result.stderr) == "the output would overwrite the input /dev/stdin: the input is never modified"
    assert samples.read_text() == SAMPLES


def test_a_pipe_in_and_a_file_out_still_work(tmp_path, tiny_llama_path):
    out = tmp_path / "out.jsonl"
    result = backspace("synth", "-", "-o", out, "--tokenizer", tiny_llama_path, "-q", input=SAMPLES.encode())
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["messages"][0]["content"] for line in out.read_text().splitlines()] == \
           ["What is 2+3?", "add 7 and 15"]


# Bytes that are not UTF-8, and JSON no reader should take

@pytest.mark.parametrize("command", [["complete"], ["chat"]])
def test_a_prompt_that_is_not_utf8_is_one_line(command, tiny_llama_path):
    piped = backspace(*command, "-m", tiny_llama_path, input=NOT_UTF8)
    assert piped.returncode == 1 and one_line(piped.stderr) == "standard input is not UTF-8 text"
    argument = backspace(*command, "-m", tiny_llama_path, b"\xed\xa0\x80", input=b"")
    assert argument.returncode == 1 and one_line(argument.stderr) == "the argument is not UTF-8 text"


@pytest.mark.parametrize("command", [["synth", "-", "-q"], ["eval", "/dev/stdin"]])
def test_binary_on_standard_input_of_synth_and_eval_is_one_line(command, tiny_llama_path):
    result = backspace(*command, "--tokenizer" if "synth" in command else "-m", tiny_llama_path, input=NOT_UTF8)
    assert result.returncode == 1 and one_line(result.stderr) == "line 1: not UTF-8 text"


# A first line each command takes, then the options that run it on the tiny model.
READERS = {
    "synth": (SAMPLES.splitlines()[0], ["-o", "{tmp}/out.jsonl", "--tokenizer", "{model}", "-q"]),
    "eval": (TASKS.strip(), ["-m", "{model}", "-n", "2"]),
}


@pytest.mark.parametrize("line, reason", [
    (b'{"prompt": "caf\xe9", "response": "ok", "answer": "ok"}', "not UTF-8 text"),
    (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON nested too deeply"),
    (b'{"prompt": "\\ud800", "response": "ok", "answer": "ok"}',
     "a \\u escape names half a character (a lone surrogate)"),
])
@pytest.mark.parametrize("command", list(READERS))
def test_a_line_no_reader_takes_is_refused_by_its_number(command, line, reason, tmp_path, tiny_llama_path):
    first, options = READERS[command]
    data = tmp_path / "data.jsonl"
    data.write_bytes(first.encode() + b"\n" + line + b"\n")
    result = invoke(command, data, *(option.format(tmp=tmp_path, model=tiny_llama_path) for option in options))
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"line 2: {reason}"
    assert sorted(tmp_path.iterdir()) == [data]


# A directory where a file goes, and option values out of range

@pytest.mark.parametrize("args", [
    ["synth", "{dir}"],
    ["synth", "{samples}", "-o", "{dir}"],
    ["synth", "{samples}", "--tokenized", "{dir}"],
    ["eval", "{dir}"],
    ["eval", "{tasks}", "--answers", "{dir}"],
    ["complete", "-n", "-5", "hi"],
    ["synth", "{samples}", "--rate", "2"],
    ["eval", "{tasks}", "--temps", "0,-1"],
    ["complete", "--no-such-option", "hi"],
    ["--no-such-option", "complete", "hi"],
    ["no-such-command"],
])
def test_a_bad_command_line_is_one_line_with_status_2(args, tmp_path, inputs):
    values = {"dir": str(tmp_path), **{name: str(path) for name, path in inputs.items()}}
    result = invoke(*(arg.format(**values) for arg in args))
    assert result.exit_code == 2
    assert "Usage:" not in one_line(result.stderr)
    assert sorted(tmp_path.iterdir()) == sorted(inputs.values())


@pytest.mark.parametrize("name", ["backspace", *main.commands])
def test_every_command_answers_dash_h_as_its_help_even_on_its_own(name):
    command = main if name == "backspace" else main.commands[name]
    short, long = (CliRunner().invoke(command, [flag]) for flag in ("-h", "--help"))
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout and "Usage:" in short.stdout


# SIGTERM mid-write, and Ctrl-C at the first and the last moment

def terminated_mid_write(args: list, partial_count: int, folder: Path, stdin: bytes | None = None) -> tuple[int, str]:
    """Run `backspace ARGS`, send SIGTERM once its partial outputs are in `folder`; its status and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "backspace_cli", *map(str, args)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if stdin is not None:
        process.stdin.write(stdin)  # the pipe stays open, so the command waits for more, mid-write
        process.stdin.flush()
    deadline = time.monotonic() + 120
    while len(partials(folder)) < partial_count and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(partials(folder)) == partial_count, "the command never opened its outputs"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.decode()


def test_sigterm_mid_synth_removes_both_partial_outputs_and_says_interrupted(tmp_path, tiny_llama_path):
    out, tokens = tmp_path / "out.jsonl", tmp_path / "tokens.jsonl"
    status, stderr = terminated_mid_write(["synth", "-", "-o", out, "--tokenized", tokens, "--tokenizer",
                                           tiny_llama_path, "-q"], 2, tmp_path, stdin=SAMPLES.encode())
    assert status == 130 and stderr == "interrupted\n"
    assert sorted(tmp_path.iterdir()) == []


def test_sigterm_mid_eval_removes_the_partial_answers(tmp_path, tiny_llama_path):
    tasks, answers = tmp_path / "tasks.jsonl", tmp_path / "answers.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"count to {i}", "answer": str(i)}) + "\n" for i in range(300)))
    status, stderr = terminated_mid_write(["eval", tasks, "-m", tiny_llama_path, "-n", 64, "-t", 1,
                                           "--answers", answers], 1, tmp_path)
    assert status == 130 and stderr == "interrupted\n"
    assert sorted(tmp_path.iterdir()) == [tasks]


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_ctrl_c_while_the_program_starts_is_one_line():
    # Ctrl-C arrives as click, which only the command line imports, is being imported.
    code = """
import importlib.abc, os, runpy, signal, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "click":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
sys.argv = ["backspace", "--help"]
runpy.run_module("backspace_cli", run_name="__main__")
"""
    result = run_python(code)
    assert result.returncode == 130 and result.stderr == "interrupted\n" and result.stdout == ""


def test_ctrl_c_after_the_command_has_ended_changes_nothing():
    code = """
import atexit, os, runpy, signal, sys

atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))
sys.argv = ["backspace", "--version"]
runpy.run_module("backspace_cli", run_name="__main__")
"""
    result = run_python(code)
    assert result.returncode == 0 and result.stderr == "" and result.stdout.startswith("backspace, version ")
