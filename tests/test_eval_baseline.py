"""backspace eval --baseline: a delete model against another model in the banned settings, the same tasks, seeds
and sampling, compared task by task."""
import io
import json
import random
from dataclasses import asdict

import pytest
from click.testing import CliRunner
from rich.console import Console

from backspace_cli.cli.data import eval_command
from backspace_cli.data.eval_report import baseline_table
from backspace_cli.data.eval_results import BaselineRun, Outcome, best_against_best, compare, comparisons
from backspace_cli.data.evaluation import EvalArm, Evaluator, arms_for_temps, summarise
from backspace_cli.default_model import default_model_path

# Tasks the tiny random models get right now and then: a reply that holds a common letter.
TASKS = "".join(json.dumps({"prompt": f"the water {i}", "answer": letter}) + "\n"
                for i, letter in enumerate("etaoinshrdlu"))
TINY = ("-n", "6", "--scoring", "contains", "-t", "2", "-c", "128")


@pytest.fixture
def tasks(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text(TASKS)
    return path


def invoke(*args):
    return CliRunner().invoke(eval_command, [str(arg) for arg in args])


def run_json(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def without_speeds(settings: list[dict]) -> list[dict]:
    return [{key: value for key, value in setting.items() if key != "tokens_per_second"} for setting in settings]


def answers_of(path, prefix: str = "") -> dict[str, list[dict]]:
    """An --answers file's replies by setting, the ones whose setting starts with `prefix`, prefix dropped."""
    by_setting: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        setting = record.pop("setting")
        if setting.startswith(prefix):
            by_setting.setdefault(setting[len(prefix):], []).append(record)
    return by_setting


def arm_report(name: str, deletes: bool, records: list[dict]):
    outcomes = [Outcome(r["text"], r["correct"], r["deletes"], 1, 0.1, r["longest_delete_run"], r["emptied"])
                for r in sorted(records, key=lambda r: r["task"])]
    return summarise(EvalArm(name, deletes, False), outcomes)


def test_a_model_against_itself_gains_what_deletes_gain_over_its_own_ban(tmp_path):
    builtin = default_model_path()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"Which two of 3 8 5 1 {n} add up to {n + 1}?",
                                         "answer": f"1+{n}"}) + "\n" for n in range(9, 15)))
    report = run_json(tasks, "-m", builtin, "--baseline", builtin, "--temp", "2", "--min-p", "0", "--top-k", "0",
                      "--top-p", "1", "-n", "12", "-t", "2", "-c", "128")
    baseline = report["baseline"]
    assert baseline["model"] == str(builtin)
    # The same model in the same banned setting, with the same seeds: the same replies, so the same comparison.
    assert without_speeds(baseline["settings"]) == without_speeds([s for s in report["settings"]
                                                                   if s["name"] == "no-delete"])
    assert baseline["comparisons"] == report["comparisons"]
    assert baseline["best"] == report["comparisons"][0]  # one setting each: the best is the only one


def test_each_row_is_compare_on_the_two_models_own_answers(tmp_path, tasks, tiny_llama_path,
                                                           tiny_llama_without_delete_path):
    own, plain, both = tmp_path / "own.jsonl", tmp_path / "plain.jsonl", tmp_path / "both.jsonl"
    sweep = ("--temps", "0,1.5", *TINY)
    assert invoke(tasks, "-m", tiny_llama_path, *sweep, "--answers", own).exit_code == 0
    assert invoke(tasks, "-m", tiny_llama_without_delete_path, *sweep, "--answers", plain).exit_code == 0
    args = (tasks, "-m", tiny_llama_path, "--baseline", tiny_llama_without_delete_path, *sweep)
    report = run_json(*args, "--answers", both)
    table = invoke(*args)
    assert table.exit_code == 0, table.output

    mine, theirs = answers_of(own), answers_of(plain)
    expected = [compare(arm_report(on, True, mine[on]), arm_report(off, False, theirs[off]))
                for on, off in (("greedy, deletes", "greedy, no-delete"),
                                ("temp 1.5, deletes", "temp 1.5, no-delete"))]
    assert [json.loads(json.dumps(asdict(c))) for c in expected] == report["baseline"]["comparisons"]
    assert sum(c.only_with_deletes + c.only_without for c in expected) > 0  # the two models do differ
    assert "against the baseline" in table.stdout
    for comparison in expected:
        assert f"{comparison.gain * 100:+.1f} pts" in table.stdout
        assert f"{comparison.only_with_deletes}/{comparison.only_without}" in table.stdout
    # The baseline's own replies, each under its setting with the baseline named, after the model's.
    assert answers_of(both, "baseline: ") == {name: records for name, records in theirs.items()
                                              if name.endswith("no-delete")}
    assert {name: records for name, records in answers_of(both).items()
            if not name.startswith("baseline: ")} == mine


def test_the_json_report_names_the_baseline_and_its_best_setting(tasks, tiny_llama_path,
                                                                 tiny_llama_without_delete_path):
    report = run_json(tasks, "-m", tiny_llama_path, "--baseline", tiny_llama_without_delete_path,
                      "--temps", "0,1.5", *TINY)
    baseline = report["baseline"]
    assert baseline["model"] == str(tiny_llama_without_delete_path)
    assert [s["name"] for s in baseline["settings"]] == ["greedy, no-delete", "temp 1.5, no-delete"]
    assert all(not s["deletes_enabled"] and s["answers"] == 12 for s in baseline["settings"])
    best_on = max((s for s in report["settings"] if s["deletes_enabled"]), key=lambda s: s["accuracy"])
    best_off = max(baseline["settings"], key=lambda s: s["accuracy"])
    assert (baseline["best"]["setting"], baseline["best"]["baseline"]) == (best_on["name"], best_off["name"])
    assert "baseline" not in run_json(tasks, "-m", tiny_llama_path, *TINY)


def test_one_reply_at_a_time_gives_the_same_baseline_report(tasks, tiny_llama_path, tiny_llama_without_delete_path):
    args = (tasks, "-m", tiny_llama_path, "--baseline", tiny_llama_without_delete_path, "--temp", "1.5", *TINY)
    together, alone = run_json(*args, "--parallel", "4"), run_json(*args, "--parallel", "1")
    assert without_speeds(together["baseline"]["settings"]) == without_speeds(alone["baseline"]["settings"])
    assert together["baseline"]["comparisons"] == alone["baseline"]["comparisons"]


def test_the_baseline_runs_with_the_models_sampling_not_its_own_recommendation(tiny_llama_path, tmp_path):
    import tiny_models
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings

    evaluator = Evaluator(Session(Settings(model=str(tiny_llama_path), threads=2, temp=1.1, top_k=7)), greedy=True)
    baseline = evaluator.baseline(str(tiny_models.build_llama(tmp_path / "other.gguf", delete_token=None, seed=1)))
    assert [arm.name for arm in baseline.arms] == ["no-delete", "greedy, no-delete"]
    assert (baseline.settings.temp, baseline.settings.top_k, baseline.seed) == (1.1, 7, evaluator.seed)
    assert baseline.delete_token is None


@pytest.mark.parametrize("content", [None, "not a model\n"], ids=["missing", "not a GGUF"])
def test_a_baseline_that_cannot_be_opened_gets_the_line_that_m_gets(tmp_path, tasks, tiny_llama_path, content,
                                                                    monkeypatch):
    bad = tmp_path / "bad.gguf"
    if content is not None:
        bad.write_text(content)
    ran = []
    monkeypatch.setattr(Evaluator, "run", lambda self, tasks, progress=None: ran.append(1) or [])
    as_baseline = invoke(tasks, "-m", tiny_llama_path, "--baseline", bad)
    as_model = invoke(tasks, "-m", bad)
    assert as_baseline.exit_code == 1 and len(as_baseline.stderr.strip().splitlines()) == 1
    assert as_baseline.stderr == as_model.stderr and "Traceback" not in as_baseline.output
    assert ran == []  # refused before a single task was run


def test_the_baseline_may_not_be_the_answers_file(tmp_path, tasks, tiny_llama_path, tiny_llama_without_delete_path):
    baseline = tmp_path / "baseline.gguf"
    baseline.write_bytes(tiny_llama_without_delete_path.read_bytes())
    result = invoke(tasks, "-m", tiny_llama_path, "--baseline", baseline, "--answers", baseline)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert baseline.read_bytes() == tiny_llama_without_delete_path.read_bytes()


def test_help_names_the_baseline_option():
    result = CliRunner().invoke(eval_command, ["--help"])
    assert result.exit_code == 0 and "--baseline PATH.gguf" in result.stdout


def reports_of(arms: list[EvalArm], n: int, correct_share: float, seed: int) -> list:
    def outcomes(arm_seed: int) -> list[Outcome]:
        rng = random.Random(arm_seed)
        return [Outcome("x", rng.random() < correct_share, 0, 10, 0.01, 0, False) for _ in range(n)]
    return [summarise(arm, outcomes(seed + number)) for number, arm in enumerate(arms)]


def test_the_best_pair_is_each_sides_most_accurate_setting_the_earlier_on_a_tie():
    def arm(name, deletes, right):
        return summarise(EvalArm(name, deletes, False), [Outcome("", c, 0, 1, 0.1, 0, False) for c in right])

    mine = [arm("a", True, [True, False, False]), arm("b", True, [True, True, False]), arm("c", True, [True, True, False])]
    theirs = [arm("x", False, [False, False, True]), arm("y", False, [True, True, True])]
    best = best_against_best(mine + [arm("banned", False, [True] * 3)], theirs)
    assert (best.setting, best.baseline) == ("b", "y") and best == compare(mine[1], theirs[1])
    assert best_against_best(mine, []) is None


@pytest.mark.parametrize("n, correct_share", [(1000, 0.5), (9999, 0.999), (7, 0.0)])
def test_the_baseline_table_fits_80_columns_and_cuts_nothing(n, correct_share):
    arms = arms_for_temps([0, 0.8, 1.25])
    reports = reports_of(arms, n, correct_share, 0)
    theirs = reports_of([arm for arm in arms if not arm.deletes], n, correct_share, 10)
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(baseline_table(reports, BaselineRun("b.gguf", theirs), "against the baseline b.gguf"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    rows = [*comparisons(reports, theirs), best_against_best(reports, theirs)]
    for comparison in rows:
        assert f"p={comparison.p_value:.2g}" in text and f"{comparison.gain * 100:+.1f} pts" in text
    for report in [report for report in reports if report.deletes_enabled] + theirs:
        assert f"{report.accuracy:.1%}" in text
