"""backspace eval --parallel: replies stepped together in one batch give the report that one at a time gives."""
import json

from click.testing import CliRunner

from backspace_cli.cli.data import eval_command
from test_eval import builtin_path, tasks_file  # noqa: F401  (the fixtures)


def report_and_answers(tmp_path, tasks_file, model, *args):
    """The JSON report without its speeds, which depend on how replies share the machine, and every answer."""
    answers = tmp_path / f"answers{len(list(tmp_path.iterdir()))}.jsonl"
    result = CliRunner().invoke(eval_command, [str(arg) for arg in (tasks_file, "-m", model, "--json", "-t", "1",
                                                                     "--answers", answers, *args)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for setting in report["settings"]:
        del setting["tokens_per_second"]
    return report, answers.read_text().splitlines()


def test_a_batched_greedy_eval_reports_what_one_at_a_time_reports(tmp_path, tasks_file, builtin_path):
    options = ("--temp", "0", "--limit", "12", "-n", "12")  # enough tasks that a greedy reply deletes
    serial = report_and_answers(tmp_path, tasks_file, builtin_path, "--parallel", "1", *options)
    together = report_and_answers(tmp_path, tasks_file, builtin_path, "--parallel", "4", *options)
    assert together == serial
    report, answers = serial
    assert len(answers) == 24 and any(setting["deletes_per_answer"] for setting in report["settings"])


def test_a_recurrent_model_is_evaluated_one_reply_at_a_time_and_eval_says_so(tmp_path, tasks_file, tiny_mamba_path):
    result = CliRunner().invoke(eval_command, [str(tasks_file), "-m", str(tiny_mamba_path), "--limit", "2", "-n", "4",
                                               "--parallel", "3", "--json", "-t", "1"])
    assert result.exit_code == 0, result.output
    assert "its replies run one at a time" in result.stderr
    assert json.loads(result.stdout)["settings"][0]["answers"] == 2
