"""backspace eval --temps: both settings at each temperature on the same seeds, one table, and a chart."""
import json
import sys

import pytest
from click.testing import CliRunner

from backspace_cli.cli.data import eval_command
from backspace_cli.data.eval_results import comparisons
from backspace_cli.data.evaluation import arms_for_temps, summarise

TASKS = [("What is 12+7?", "19"), ("What is 30+4?", "34"), ("What is 5+5?", "10"), ("What is 48+27?", "75")]


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "tasks.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in TASKS))
    return path


def invoke(*args):
    return CliRunner().invoke(eval_command, [str(arg) for arg in args])


def report(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_sweep_runs_both_settings_at_each_temperature_and_pairs_them_by_temperature(tasks_file):
    data = report(tasks_file, "--temps", "1.5,0", "--seed", "3")
    arms = [(s["name"], s["deletes_enabled"], s["temp"]) for s in data["settings"]]
    assert arms == [("greedy, deletes", True, 0.0), ("greedy, no-delete", False, 0.0),
                    ("temp 1.5, deletes", True, 1.5), ("temp 1.5, no-delete", False, 1.5)]
    assert [(c["setting"], c["baseline"]) for c in data["comparisons"]] == [
        ("greedy, deletes", "greedy, no-delete"), ("temp 1.5, deletes", "temp 1.5, no-delete")]
    assert data["options"]["temps"] == [0.0, 1.5]


def test_each_temperature_of_a_sweep_answers_as_a_run_at_that_temperature_alone(tasks_file, tmp_path):
    swept, alone = tmp_path / "swept.jsonl", tmp_path / "alone.jsonl"
    assert invoke(tasks_file, "--temps", "0,1.5", "--seed", "3", "--answers", swept).exit_code == 0
    assert invoke(tasks_file, "--temp", "1.5", "--seed", "3", "--answers", alone).exit_code == 0
    in_sweep = [json.loads(line) for line in swept.read_text().splitlines()]
    on_its_own = [json.loads(line) for line in alone.read_text().splitlines()]
    pick = lambda rows, name: [(r["task"], r["text"], r["deletes"]) for r in rows if r["setting"] == name]
    assert pick(in_sweep, "temp 1.5, deletes") == pick(on_its_own, "deletes")
    assert pick(in_sweep, "temp 1.5, no-delete") == pick(on_its_own, "no-delete")


def test_the_sweep_table_has_one_row_per_temperature_with_its_paired_gain(tasks_file):
    result = invoke(tasks_file, "--temps", "0,0.8", "--seed", "1")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if " pts " in line]
    assert len(rows) == 2
    assert "greedy" in rows[0] and "0.8" in rows[1]


def test_plot_writes_a_chart_of_the_sweep(tasks_file, tmp_path):
    chart = tmp_path / "sweep.png"
    result = invoke(tasks_file, "--temps", "0,1.5", "--plot", chart)
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.png"]  # no temporary file left behind


@pytest.mark.parametrize("args, message", [
    (["--plot", "x.png"], "--plot needs --temps"),
    (["--temps", "0,1", "--temp", "1"], "--temps replaces --temp and --greedy"),
    (["--temps", "0,1", "--greedy"], "--temps replaces --temp and --greedy"),
    (["--temps", "0,hot"], "'0,hot'"),
    (["--temps", "0,-1"], "'0,-1'"),
    (["--temps", ","], "names no temperature"),
])
def test_a_sweep_asked_for_wrongly_is_a_usage_error(tasks_file, args, message):
    result = invoke(tasks_file, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_chart_in_a_format_matplotlib_is_not_asked_for_is_one_line(tasks_file, tmp_path):
    result = invoke(tasks_file, "--temps", "0", "--limit", "1", "--plot", tmp_path / "chart.txt")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: --plot {tmp_path / 'chart.txt'}: name a .png, .svg or .pdf file"]
    assert not (tmp_path / "chart.txt").exists()


def test_a_plot_without_matplotlib_says_which_extra_brings_it(tasks_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the plot extra meets
    result = invoke(tasks_file, "--temps", "0", "--limit", "1", "--plot", tmp_path / "chart.svg")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --plot needs matplotlib: in backspace's checkout, pip install -e '.[plot]'"]
    assert not (tmp_path / "chart.svg").exists()


def test_sweep_arms_are_named_by_temperature_and_greedy_is_temperature_zero():
    arms = arms_for_temps([0.0, 0.8])
    assert [(a.name, a.deletes, a.greedy, a.temp) for a in arms] == [
        ("greedy, deletes", True, True, None), ("greedy, no-delete", False, True, None),
        ("temp 0.8, deletes", True, False, 0.8), ("temp 0.8, no-delete", False, False, 0.8)]
    reports = [summarise(arm, []) for arm in arms]
    assert [(c.setting, c.baseline) for c in comparisons(reports)] == [
        ("greedy, deletes", "greedy, no-delete"), ("temp 0.8, deletes", "temp 0.8, no-delete")]
