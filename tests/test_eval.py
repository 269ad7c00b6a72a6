"""backspace eval on real models: both settings with the same seeds, honest statistics, clear errors."""
import io
import json
import math
import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from backspace_cli.cli.data import eval_command
from backspace_cli.default_model import default_model_path
from backspace_cli.data.eval_results import Outcome, compare, comparisons
from backspace_cli.data.eval_stats import wilson
from backspace_cli.data.eval_report import report_table, sweep_table
from backspace_cli.data.evaluation import EvalArm, Evaluator, arms_for, arms_for_temps, summarise
from backspace_cli.data.tasks import read_tasks, score
from backspace_cli.engine.session import Session
from backspace_cli.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
import twosum  # noqa: E402


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "tasks.jsonl"
    tasks = twosum.tasks(24, seed=5, evaluation=True)
    path.write_text("".join(json.dumps({"prompt": t["prompt"], "answer": t["response"]}) + "\n" for t in tasks))
    return path


@pytest.fixture(scope="module")
def builtin_path():
    path = default_model_path()
    assert path is not None, "the built-in model is missing: run make demo-model"
    return path


def invoke(*args):
    return CliRunner().invoke(eval_command, [str(arg) for arg in args])


def run_json(*args):
    result = invoke(*args, "--json", "-t", "2")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_reports_both_settings_with_consistent_statistics(tasks_file, builtin_path):
    report = run_json(tasks_file, "-m", builtin_path, "--temp", "3", "--min-p", "0", "--top-k", "0",
                      "--top-p", "1", "-n", "12")
    assert report["tasks"] == 24 and report["delete_token"] == "<|delete|>"
    deletes, banned = report["settings"]
    assert (deletes["name"], banned["name"]) == ("deletes", "no-delete")
    for setting in (deletes, banned):
        assert setting["answers"] == 24
        assert setting["accuracy"] == pytest.approx(setting["correct"] / 24)
        low, high = setting["ci95"]
        assert low <= setting["accuracy"] <= high
        assert setting["answers_with_delete"] + setting["answers_without_delete"] == 24
        assert setting["tokens_per_second"] > 0
    assert banned["share_with_delete"] == 0 and banned["deletes_per_answer"] == 0
    assert banned["accuracy_with_delete"] is None
    # At temperature 3 this model slips into characters that cannot be right, notices and deletes.
    assert deletes["share_with_delete"] > 0 and deletes["deletes_per_answer"] > 0
    (paired,) = report["comparisons"]
    assert (paired["setting"], paired["baseline"]) == ("deletes", "no-delete")
    assert paired["gain"] == pytest.approx(deletes["accuracy"] - banned["accuracy"])


def test_eval_takes_the_engine_options_that_complete_and_chat_take(tasks_file, builtin_path):
    report = run_json(tasks_file, "-m", builtin_path, "--temp", "3", "--min-p", "0", "--top-k", "0", "--top-p", "1",
                      "-n", "12", "--max-deletes", "0", "--repeat-penalty", "1.1", "--logit-bias", "5=-2", "-ngl", "0")
    assert all(setting["deletes_per_answer"] == 0 for setting in report["settings"])  # the first delete ends a reply
    options = report["options"]
    assert (options["max_deletes"], options["repeat_penalty"], options["logit_bias"]) == (0, 1.1, [["5", -2.0]])
    assert invoke(tasks_file, "-m", builtin_path, "--no-delete").exit_code == 2  # eval runs both settings itself


def test_the_same_seeds_give_the_same_report(tasks_file, builtin_path):
    args = (tasks_file, "-m", builtin_path, "--temp", "1.2", "--limit", "8", "-n", "12", "--seed", "3")
    first, second = run_json(*args), run_json(*args)
    for a, b in zip(first["settings"], second["settings"]):
        a.pop("tokens_per_second"), b.pop("tokens_per_second")
        assert a == b


def test_greedy_adds_two_settings_and_temperature_zero_runs_only_those(tasks_file, builtin_path):
    names = [s["name"] for s in run_json(tasks_file, "-m", builtin_path, "--greedy", "--temp", "1", "--limit", "4")["settings"]]
    assert names == ["deletes", "no-delete", "greedy, deletes", "greedy, no-delete"]
    names = [s["name"] for s in run_json(tasks_file, "-m", builtin_path, "--temp", "0", "--limit", "4")["settings"]]
    assert names == ["greedy, deletes", "greedy, no-delete"]


def test_the_table_and_the_answers_file(tmp_path, tasks_file, builtin_path):
    answers = tmp_path / "answers.jsonl"
    result = invoke(tasks_file, "-m", builtin_path, "--temp", "1", "--limit", "5", "--answers", answers, "-t", "2")
    assert result.exit_code == 0, result.output
    for heading in ("accuracy", "95% CI", "deletes / answer", "tokens/s", "no-delete"):
        assert heading in result.stdout
    lines = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(lines) == 10 and {line["setting"] for line in lines} == {"deletes", "no-delete"}


def test_a_report_file_holds_what_json_prints_while_the_table_still_prints(tmp_path, tasks_file, builtin_path):
    report = tmp_path / "report.json"
    printed = invoke(tasks_file, "-m", builtin_path, "--temp", "0", "--limit", "3", "--report", report, "--json")
    assert printed.exit_code == 0, printed.output
    assert json.loads(report.read_text()) == json.loads(printed.stdout)
    table = invoke(tasks_file, "-m", builtin_path, "--temp", "0", "--limit", "3", "--report", report)
    assert table.exit_code == 0 and "accuracy" in table.stdout
    assert [s["correct"] for s in json.loads(report.read_text())["settings"]] == \
        [s["correct"] for s in json.loads(printed.stdout)["settings"]]


def test_a_report_file_named_as_the_tasks_is_refused_and_the_tasks_kept(tasks_file, builtin_path):
    before = tasks_file.read_bytes()
    result = invoke(tasks_file, "-m", builtin_path, "--limit", "1", "--report", tasks_file)
    assert result.exit_code != 0 and "overwrite" in result.stderr
    assert tasks_file.read_bytes() == before


def printed_80_wide(table) -> str:
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def reports_of(arms: list[EvalArm], n: int, correct_share: float) -> list:
    def outcomes(seed: int) -> list[Outcome]:
        rng = random.Random(seed)
        replies = [(rng.random() < correct_share, rng.choice([0, 0, 1, 12])) for _ in range(n)]
        return [Outcome("x", correct, deletes, 10, 0.01, deletes, deletes == 12) for correct, deletes in replies]
    return [summarise(arm, outcomes(seed)) for seed, arm in enumerate(arms)]


TITLE = "backspace eval: 9999 tasks, temp 0.8, top-k 40, top-p 0.95, min-p 0.05, contains match"


@pytest.mark.parametrize("n, correct_share", [(1000, 0.5), (9999, 0.999), (7, 0.0)])
def test_the_tables_fit_80_columns_and_cut_nothing(n, correct_share):
    reports = reports_of(arms_for(0.8, greedy=True), n, correct_share)  # the widest: four settings
    swept = reports_of(arms_for_temps([0, 0.8, 1.5]), n, correct_share)
    for table, shown in ((report_table(reports, TITLE), reports), (sweep_table(swept, TITLE), swept)):
        text = printed_80_wide(table)
        assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
        for report in shown:
            assert f"{report.accuracy:.1%}" in text
        for comparison in comparisons(shown):
            assert f"p={comparison.p_value:.2g}" in text
    assert all(f"{report.correct}/{report.answers}" in printed_80_wide(report_table(reports, TITLE))
               for report in reports)


def test_raw_prompts_skip_the_chat_template(builtin_path):
    session = Session(Settings(model=str(builtin_path), ctx_size=256, threads=2))
    model = session.model
    chat = Evaluator(session).prompt_tokens("1+2")
    raw = Evaluator(session, raw=True).prompt_tokens("1+2")
    assert raw == model.tokenize("1+2", add_bos=True)

    def text(tokens):
        return "".join(model.token_text(token) for token in tokens)

    assert (text(raw), text(chat)) == ("1+2", "<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n")


def test_a_model_without_a_delete_token_runs_both_settings_plainly(tmp_path, tiny_llama_without_delete_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"prompt": "the water", "answer": "is"}\n' * 3)
    result = CliRunner().invoke(eval_command, [str(tasks), "-m", str(tiny_llama_without_delete_path), "-n", "4",
                                           "--json", "--scoring", "contains"])
    assert result.exit_code == 0, result.output
    assert "no delete token" in result.stderr
    deletes, banned = json.loads(result.stdout)["settings"]
    assert deletes["correct"] == banned["correct"] and deletes["deletes_per_answer"] == 0


@pytest.mark.smollm2
def test_eval_works_on_smollm2_with_a_delete_token_given_by_text(tmp_path, smollm2_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"prompt": "What is the capital of France? One word.", "answer": "Paris"}\n'
                     '{"prompt": "What is 2+2? Answer with a number.", "answer": "4"}\n')
    report = run_json(tasks, "-m", smollm2_path, "--delete-token", "<|endoftext|>", "--scoring", "contains",
                      "-n", "16", "--temp", "0.7")
    assert [s["answers"] for s in report["settings"]] == [2, 2]
    assert report["delete_token"] == "<|endoftext|>"


def test_scoring_and_the_confidence_interval():
    assert score(" 1421\n", "1421", "exact") and not score("14210", "1421", "exact")
    assert score("The answer is 1421.", "1421", "contains")
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0 and 0.69 < wilson(10, 10)[0] < 0.73


def test_accuracy_is_split_by_whether_a_delete_happened():
    outcomes = [Outcome("1", True, 1, 3, 0.1, 1, False), Outcome("2", False, 2, 4, 0.1, 2, True),
                Outcome("3", True, 0, 2, 0.1, 0, False)]
    report = summarise(EvalArm("deletes", True, False), outcomes)
    assert report.accuracy_with_delete == 0.5 and report.answers_with_delete == 2
    assert report.accuracy_without_delete == 1.0 and report.deletes_per_answer == 1.0
    assert report.share_with_delete == pytest.approx(2 / 3) and report.tokens_per_second == pytest.approx(30.0)


def test_a_settings_delete_risks_are_its_worst_reply_and_its_share_of_emptied_replies():
    outcomes = [Outcome("1", True, 3, 9, 0.1, 2, False), Outcome("", False, 2, 4, 0.1, 2, True),
                Outcome("3", True, 0, 2, 0.1, 0, False), Outcome("4", True, 1, 3, 0.1, 1, False)]
    report = summarise(EvalArm("deletes", True, False), outcomes)
    assert (report.max_deletes, report.longest_delete_run, report.share_emptied) == (3, 2, 0.25)
    quiet = summarise(EvalArm("no-delete", False, False), [Outcome("1", True, 0, 1, 0.1, 0, False)])
    assert (quiet.max_deletes, quiet.longest_delete_run, quiet.share_emptied) == (0, 0, 0.0)


def test_deletes_are_compared_with_no_delete_task_by_task():
    def report(name, deletes, right):
        outcomes = [Outcome("", correct, 0, 1, 0.1, 0, False) for correct in right]
        return summarise(EvalArm(name, deletes, False), outcomes)

    # 12 tasks that only deletes get right, 2 that only no-delete gets right, 86 alike.
    enabled = report("deletes", True, [True] * 12 + [False] * 2 + [True] * 80 + [False] * 6)
    banned = report("no-delete", False, [False] * 12 + [True] * 2 + [True] * 80 + [False] * 6)
    (comparison,) = comparisons([enabled, banned])
    assert (comparison.only_with_deletes, comparison.only_without) == (12, 2)
    assert comparison.gain == pytest.approx(0.10)
    assert comparison.ci95[0] > 0 and comparison.ci95[1] == pytest.approx(0.2 - comparison.ci95[0])
    assert comparison.p_value == pytest.approx(2 * sum(math.comb(14, k) for k in range(3)) / 2**14)  # 0.013
    assert compare(enabled, enabled).gain == 0 and compare(enabled, enabled).p_value == 1.0


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a"}\n', 'line 1: expected {"prompt": TEXT, "answer": TEXT}'),
    ('{"prompt": "a", "answer": "b"}\nnot json\n', "line 2: not valid JSON"),
    ("\n", "the task file has no tasks"),
])
def test_bad_task_files_are_one_line_errors(tmp_path, builtin_path, content, message):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(content)
    result = invoke(tasks, "-m", builtin_path)
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_missing_model_is_a_one_line_error(tasks_file):
    result = invoke(tasks_file, "-m", "/nonexistent/model.gguf")
    assert result.exit_code == 1 and "model file not found" in result.stderr


def test_read_tasks_accepts_numbers_as_answers():
    assert read_tasks(['{"prompt": "1+1", "answer": 2}'])[0].answer == "2"


def test_an_answers_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, tasks_file, builtin_path,
                                                                           monkeypatch):
    ran = []
    monkeypatch.setattr(Evaluator, "run", lambda self, tasks, progress=None: ran.append(1) or [])
    result = invoke(tasks_file, "-m", builtin_path, "--answers", tmp_path / "missing" / "answers.jsonl")
    assert result.exit_code == 1
    assert "missing" in result.output and "Traceback" not in result.output
    assert ran == []  # refused before a single task was run
