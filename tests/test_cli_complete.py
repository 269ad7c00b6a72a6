"""`backspace complete` through click's runner and through a real pipe."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

import tiny_models
from backspace_cli.cli.main import main


def complete(*args, input=None):
    result = CliRunner().invoke(main, ["complete", *map(str, args)], input=input)
    return result


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def replay(records: list[dict]) -> str:
    pieces = []
    for record in records:
        if record["type"] == "token":
            pieces.append(record["text"])
        elif record["type"] == "delete":
            assert pieces.pop() == record["text"]
    return "".join(pieces)


def test_plain_output_is_the_final_text_and_jsonl_replays_to_it(tiny_llama_path):
    common = ["-m", tiny_llama_path, "--seed", 7, "-n", 24, "--logit-bias", "<|delete|>=40", "the water"]
    jsonl = complete(*common, "--format", "jsonl")
    plain = complete(*common)
    assert jsonl.exit_code == 0 and plain.exit_code == 0
    records = events(jsonl.stdout)
    done = records[-1]
    assert done["type"] == "done" and done["deletes"] > 0  # the bias makes deletes happen
    assert replay(records) == done["text"]
    assert plain.stdout.removesuffix("\n") == done["text"]
    assert "\x1b[" not in plain.stdout
    assert set(done) >= {"finish_reason", "text", "tokens", "generated", "deletes", "prompt_tokens",
                         "prompt_tps", "gen_tps"}


def test_trace_keeps_deleted_text_marked(tiny_llama_path):
    result = complete("-m", tiny_llama_path, "--seed", 7, "-n", 24, "--logit-bias", "<|delete|>=40",
                      "--trace", "the water")
    assert result.exit_code == 0
    assert "[-" in result.stdout and "-]" in result.stdout


def test_stdin_and_the_argument_are_joined_stdin_first(tiny_llama, tiny_llama_path):
    result = complete("-m", tiny_llama_path, "--temp", 0, "-n", 1, "--format", "jsonl", "and more",
                      input="from stdin\n")
    expected = tiny_llama.tokenize("from stdin\nand more", add_bos=True)
    assert events(result.stdout)[-1]["prompt_tokens"] == len(expected)


def test_an_adversarial_delete_bias_ends_on_the_budget_and_no_delete_never_deletes(tiny_llama_path):
    args = ["-m", tiny_llama_path, "--temp", 0, "-n", 40, "--logit-bias", "<|delete|>=100",
            "--logit-bias", "</s>=-100", "--format", "jsonl"]
    adversarial = events(complete(*args, "the water").stdout)[-1]
    assert adversarial["finish_reason"] == "delete_budget"
    banned = events(complete(*args, "--no-delete", "the water").stdout)
    assert all(record["type"] != "delete" for record in banned)
    assert banned[-1]["deletes"] == 0 and banned[-1]["tokens"] == 40


def test_unset_sampling_options_take_the_models_recommendation(tmp_path, tiny_llama_path):
    greedy_model = tiny_models.build_llama(tmp_path / "greedy.gguf", recommended_temp=0.0)
    common = ["-n", 16, "--no-delete", "the water"]
    greedy = complete("-m", tiny_llama_path, "--temp", 0, *common).output
    # The same weights, recommending temperature 0: greedy whatever the seed.
    assert complete("-m", greedy_model, "--seed", 1, *common).output == greedy
    assert complete("-m", greedy_model, "--seed", 2, *common).output == greedy
    # An explicit option wins over the recommendation.
    assert complete("-m", greedy_model, "--seed", 1, "--temp", 5, *common).output != greedy


def test_a_recommendation_that_is_not_a_number_is_a_one_line_error(tmp_path):
    model = tiny_models.build_llama(tmp_path / "odd.gguf", recommended_temp="warm")
    result = complete("-m", model, "-n", 2, "hi")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: odd.gguf: its general.sampling.temp is 'warm', not a number"]
    assert complete("-m", model, "--temp", 0, "-n", 2, "hi").exit_code == 0  # an explicit option needs none


def test_a_recommendation_outside_the_settings_bounds_is_a_one_line_error(tmp_path):
    model = tiny_models.build_llama(tmp_path / "cold.gguf", recommended_temp=-2.0)
    result = complete("-m", model, "-n", 2, "hi")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: cold.gguf: its general.sampling.temp: -2.0 is not at least 0"]


def test_a_model_without_a_delete_token_gets_one_notice(tiny_llama_without_delete_path):
    result = complete("-m", tiny_llama_without_delete_path, "-n", 4, "the water")
    assert result.exit_code == 0
    assert result.stderr.count("no delete token") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "/nonexistent/model.gguf", "hi"], "model file not found"),
        (["-m", "/", "hi"], "not a file"),
        (["-m", __file__, "hi"], "not a GGUF file"),
        (["--delete-token", "<|nope|>", "hi"], "unknown delete token"),
        (["--logit-bias", "<|nope|>=1", "hi"], "neither a token id nor one token's text"),
        (["   "], "empty prompt"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_1(tiny_llama_path, args, message):
    args = args if args[0] == "-m" else ["-m", tiny_llama_path, *args]
    result = complete(*args, input="")
    assert result.exit_code == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_truncated_gguf_is_refused_without_a_traceback(tiny_llama_path, tmp_path):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_llama_path.read_bytes()[:5000])
    result = complete("-m", truncated, "hi")
    assert result.exit_code == 1
    assert "truncated or corrupt GGUF header" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--temp", "-1"], ["-n", "0"], ["--logit-bias", "nobias"], ["--format", "xml"]])
def test_bad_option_values_are_usage_errors(tiny_llama_path, args):
    result = complete("-m", tiny_llama_path, *args, "hi")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def run_backspace(*args, input=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "backspace_cli", *map(str, args)], input=input, capture_output=True,
        text=True, env={**os.environ, **(env or {})}, timeout=300,
    )


def test_a_real_pipe_gets_clean_text_from_smollm2(smollm2_path):
    result = run_backspace("complete", "-m", smollm2_path, "-n", 32, "--temp", 0, input="Water is made of\n")
    assert result.returncode == 0
    assert result.stdout.strip() and "\x1b" not in result.stdout
    assert result.stderr.strip() == "This model has no delete token: generating plainly."


def test_llama_cpp_logs_only_with_verbose(tiny_llama_path):
    quiet = run_backspace("complete", "-m", tiny_llama_path, "-n", 2, "hi")
    loud = run_backspace("complete", "-m", tiny_llama_path, "-n", 2, "--verbose", "hi")
    assert "llama_model_loader" not in quiet.stderr
    assert "llama_model_loader" in loud.stderr


def test_help_does_not_load_llama_cpp():
    code = (
        "import sys\nfrom backspace_cli.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('llama_cpp' in sys.modules, 'numpy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_info_reports_the_backends_and_gpu_offload():
    import llama_cpp

    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert "CPU" in lines["backends"].split(", ")
    assert lines["gpu offload"] == ("yes" if llama_cpp.llama_supports_gpu_offload() else "no")
    assert int(lines["threads (default)"]) >= 1


@pytest.mark.parametrize("command", [["synth", "-q"], ["complete", "-n", "64", "the"]])
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(tmp_path, tiny_llama_path, command):
    """`backspace ... | head -1`: once the reader has gone, the command stops as cat does when SIGPIPE ends
    it (status 141), with no message."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"prompt": f"add {i}", "response": "the sum"}) + "\n" for i in range(50)))
    command = [*command, samples] if command[0] == "synth" else [*command, "-m", tiny_llama_path]
    reading, writing = os.pipe()
    os.close(reading)  # the reader has gone before the first write
    try:
        result = subprocess.run([sys.executable, "-m", "backspace_cli", *map(str, command)], stdin=subprocess.DEVNULL,
                                stdout=writing, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (141, b"")
