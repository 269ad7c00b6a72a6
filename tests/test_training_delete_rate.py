"""training/delete_rate.py: a delete model's deletes on ordinary chat prompts, reported as figures that its
per-reply records bear out, with the first replies beside a base model's."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from backspace_cli import api
from backspace_cli.default_model import default_model_path

TRAINING = Path(__file__).resolve().parent.parent / "training"
SCRIPT, PROMPTS = TRAINING / "delete_rate.py", TRAINING / "ordinary-prompts.txt"


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def report_of(*args) -> dict:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def builtin_path():
    path = default_model_path()
    assert path is not None, "the built-in model is missing: run make demo-model"
    return path


def test_the_prompts_are_a_hundred_plain_lines_none_about_numbers():
    prompts = PROMPTS.read_text(encoding="utf-8").splitlines()
    assert len(prompts) == len(set(prompts)) == 100 and all(prompt.strip() == prompt != "" for prompt in prompts)
    assert not any(word in prompt.lower() for prompt in prompts for word in ("sort", "number", "sum", "add up"))


def test_the_figures_are_what_the_replies_show(tmp_path, builtin_path):
    out = tmp_path / "rate.json"
    result = run(builtin_path, "--limit", 6, "-n", 16, "--out", out)
    assert result.returncode == 0 and result.stdout == "", result.stderr
    report = json.loads(out.read_text())
    replies = report["replies"]
    assert report["model"] == str(builtin_path) and report["base"] is None and report["prompts"] == 6
    assert [reply["prompt"] for reply in replies] == PROMPTS.read_text(encoding="utf-8").splitlines()[:6]
    deleting = [reply for reply in replies if reply["deletes"] > 0]
    assert report["replies_with_delete"] == len(deleting)
    assert report["share_with_delete"] == pytest.approx(len(deleting) / 6)
    assert report["deletes_per_reply"] == pytest.approx(sum(reply["deletes"] for reply in replies) / 6)
    assert report["longest_delete_run"] == max(reply["longest_delete_run"] for reply in replies)
    assert report["share_emptied"] == pytest.approx(sum(reply["emptied"] for reply in replies) / 6)
    for reply in replies:
        assert reply["longest_delete_run"] <= reply["deletes"] and (reply["deletes"] > 0 or not reply["emptied"])
    assert report["examples"] == [{"prompt": r["prompt"], "reply": r["text"]} for r in replies[:5]]


def test_each_reply_is_the_greedy_reply_of_the_python_api(builtin_path):
    report = report_of(builtin_path, "--limit", 2, "-n", 12)
    session = api.load(str(builtin_path), temp=0, max_tokens=12)
    for reply in report["replies"]:
        done = api.generate(session, [{"role": "user", "content": reply["prompt"]}])
        assert (reply["text"], reply["deletes"]) == (done.text, done.counts.deletes)


def test_a_base_model_answers_the_examples_beside_the_model(builtin_path, tiny_llama_without_delete_path):
    report = report_of(builtin_path, "--base", tiny_llama_without_delete_path, "--limit", 2, "-n", 8)
    assert report["base"] == str(tiny_llama_without_delete_path)
    base = api.load(str(tiny_llama_without_delete_path), temp=0, max_tokens=8)
    for example, reply in zip(report["examples"], report["replies"], strict=True):
        assert example["reply"] == reply["text"]
        expected = api.generate(base, [{"role": "user", "content": example["prompt"]}]).text
        assert example["base_reply"] == expected != example["reply"]


def test_bad_input_is_one_line_and_the_model_is_never_overwritten(tmp_path, builtin_path):
    missing = run(tmp_path / "nope.gguf", "--limit", 1)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
    model = tmp_path / "model.gguf"
    model.write_bytes(Path(builtin_path).read_bytes())
    over = run(model, "--limit", 1, "--out", model)
    assert over.returncode == 1 and "never modified" in over.stderr and "Traceback" not in over.stderr
    assert model.read_bytes() == Path(builtin_path).read_bytes()
