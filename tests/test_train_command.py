"""backspace train, end to end on a small Llama from scratch: each stage ends with a GGUF that chat opens and that
deletes; a run resumed from a checkpoint gives the weights of one never stopped; Ctrl-C in a real terminal saves
and says how to go on; bad inputs get one line."""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from backspace_cli import api  # noqa: E402
from backspace_cli.cli.main import main  # noqa: E402
from terminal import Terminal  # noqa: E402
from train_models import letter_tasks, needs_converter, write_small_config, write_tasks  # noqa: E402

# A few seconds a stage: enough steps for a small model to learn the delete, and checkpoints along the way.
RECIPE = {"sft_steps": 40, "own_steps": 10, "grpo_steps": 3, "batch": 8, "sft_lr": 3e-3, "own_lr": 1e-3,
          "grpo_lr": 1e-4, "own_tasks": 12, "grpo_prompts": 2, "grpo_group": 4, "probe_tasks": 4, "eval_tasks": 6,
          "max_tokens": 10, "save_every": 20, "probe_every": 1000,
          "description": "Spells short words backwards.", "examples": ["Reverse catdog", "Reverse sunmap"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    return {"tasks": write_tasks(folder / "tasks.jsonl", letter_tasks(60)),
            "config": write_small_config(folder / "small.json"),
            "recipe": _json(folder / "recipe.json", RECIPE), "folder": folder}


def _json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def backspace(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def deletes_when_sampled(path: Path) -> int:
    """Deletes over a few sampled chat replies to held-out-like questions."""
    session = api.load(str(path), temp=1.0, seed=3, max_tokens=10, ctx_size=160)
    total = 0
    for task in letter_tasks(8, start=70):
        total += api.generate(session, [{"role": "user", "content": task["prompt"]}]).counts.deletes
    return total


@pytest.fixture(scope="module")
def sft_run(files):
    out = files["folder"] / "sft.gguf"
    code, _, stderr = backspace("train", files["tasks"], "--from-scratch", files["config"], "-o", out,
                                "--stages", "sft", "--recipe", files["recipe"], "--plot", files["folder"] / "sft.svg")
    assert code == 0, stderr
    return out


@needs_converter
def test_the_supervised_stage_ends_with_a_gguf_that_chat_opens_and_that_deletes(sft_run):
    assert deletes_when_sampled(sft_run) > 0
    assert sft_run.with_name("sft.svg").read_text().lstrip().startswith("<?xml")  # --plot's curves
    report = json.loads(Path(str(sft_run) + ".eval.json").read_text())
    assert {arm["name"] for arm in report["settings"]} == {"greedy, deletes", "greedy, no-delete"}
    assert report["tasks"] == RECIPE["eval_tasks"]
    chat = subprocess.run([Path(sys.executable).parent / "backspace", "chat", "-m", sft_run, "Reverse catdog",
                           "--format", "jsonl"], capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    assert json.loads(chat.stdout.splitlines()[-1])["type"] == "done"


@needs_converter
def test_the_gguf_is_named_after_its_file_and_says_what_the_recipe_says_about_the_model(sft_run):
    from backspace_cli.engine.model import load_model
    from backspace_cli.introduction import Introduction

    metadata = load_model(str(sft_run), n_ctx=64, n_threads=1).metadata
    assert metadata["general.name"] == "sft"  # its file's name, not its checkpoint folder's ("final")
    about = Introduction.of(metadata)
    assert about.description == RECIPE["description"]
    assert list(about.examples) == RECIPE["examples"]


@needs_converter
@pytest.mark.parametrize("stage", ["own", "grpo"])
def test_each_later_stage_runs_alone_on_the_last_ones_checkpoint_and_its_gguf_deletes(files, sft_run, stage):
    checkpoint = sft_run.with_name("sft.train") / "sft" / "final"
    out = files["folder"] / f"{stage}.gguf"
    code, _, stderr = backspace("train", files["tasks"], "-m", checkpoint, "-o", out, "--stages", stage,
                                "--recipe", files["recipe"])
    assert code == 0, stderr
    assert deletes_when_sampled(out) > 0


@needs_converter
def test_the_same_recipe_without_deletes_trains_a_baseline_that_never_deletes(files):
    out = files["folder"] / "plain.gguf"
    recipe = _json(files["folder"] / "plain.json", {**RECIPE, "deletes": False})
    code, _, stderr = backspace("train", files["tasks"], "--from-scratch", files["config"], "-o", out,
                                "--stages", "sft,grpo", "--recipe", recipe)
    assert code == 0, stderr
    assert deletes_when_sampled(out) == 0


def test_a_recipe_field_of_the_wrong_kind_is_named(files, tmp_path):
    recipe = _json(tmp_path / "bad.json", {**RECIPE, "deletes": "no"})
    code, _, stderr = backspace("train", files["tasks"], "--from-scratch", files["config"], "-o",
                                tmp_path / "out.gguf", "--recipe", recipe)
    assert code == 1
    assert "recipe field deletes: expected true or false" in stderr


def final_weights(work: Path, stage: str = "sft") -> dict:
    from safetensors.torch import load_file

    return load_file(work / stage / "final" / "model.safetensors")


def killed_after_first_checkpoint(sft_run: Path, folder: Path) -> Path:
    """A copy of the supervised run's folder as a run killed after its first checkpoint leaves it."""
    work = folder / "killed.train"
    shutil.copytree(sft_run.with_name("sft.train"), work)
    shutil.rmtree(work / "sft" / "final")
    shutil.rmtree(work / "sft" / f"checkpoint-{RECIPE['sft_steps']}")
    job = json.loads((work / "run.json").read_text())
    (work / "run.json").write_text(json.dumps({**job, "work": str(work), "output": str(folder / "killed.gguf")}))
    return work


@needs_converter
def test_a_run_resumed_from_its_checkpoint_gives_the_weights_of_one_never_stopped(sft_run, tmp_path):
    work = killed_after_first_checkpoint(sft_run, tmp_path)
    code, _, stderr = backspace("train", "--resume", work)
    assert code == 0, stderr
    assert "resuming from checkpoint-20" in stderr
    resumed, uninterrupted = final_weights(work), final_weights(sft_run.with_name("sft.train"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)
    assert (tmp_path / "killed.gguf").is_file()


@needs_converter
def test_ctrl_c_in_a_terminal_saves_a_checkpoint_and_prints_the_command_that_resumes(files, tmp_path):
    recipe = _json(tmp_path / "long.json", {**RECIPE, "sft_steps": 5000, "save_every": 5000})
    out = tmp_path / "long.gguf"
    command = [str(Path(sys.executable).parent / "backspace"), "train", str(files["tasks"]), "--from-scratch",
               str(files["config"]), "-o", str(out), "--stages", "sft", "--recipe", str(recipe)]
    terminal = Terminal(command, env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}, width=120)
    try:
        terminal.wait_for(r"\d+/5000", timeout=180)  # the stage's progress bar
        terminal.press("C-c")
        screen = terminal.wait_for(r"EXIT:\d+", timeout=120).string
    finally:
        terminal.close()
    work = tmp_path / "long.train"
    assert f"resume with: backspace train --resume {work}" in " ".join(screen.split())
    assert "EXIT:130" in screen
    assert "Traceback" not in screen
    assert list((work / "sft").glob("checkpoint-*")), "the interrupted step was saved"
    assert not out.exists()


def boom(reply, answers):
    raise ValueError("the verifier's own bug")


@pytest.mark.parametrize("case", ["malformed line", "not a causal LM", "no chat template", "scorer raises"])
def test_bad_inputs_get_one_line(files, tmp_path, monkeypatch, case):
    args = ["train", files["tasks"], "--from-scratch", files["config"], "-o", tmp_path / "out.gguf", "--stages",
            "sft", "--steps", "sft=1", "--recipe", files["recipe"]]
    if case == "malformed line":
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a"}\n{"prompt": "c", "answer": "d"}\n')
        args[1] = bad
        expected = "line 2"
    elif case == "not a causal LM":
        import transformers

        folder = tmp_path / "distilbert"  # an encoder with no causal-LM head in transformers
        transformers.DistilBertModel(transformers.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=32,
                                                                   vocab_size=100)).save_pretrained(folder)
        args[2:4] = ["-m", folder]
        expected = "not a causal language model"
    elif case == "no chat template":
        import transformers

        from backspace_cli.train.scratch_tokenizer import train_tokenizer

        folder = tmp_path / "plain"
        tokenizer = train_tokenizer(["some text to learn from"], "<|delete|>")
        tokenizer.chat_template = None
        tokenizer.save_pretrained(folder)
        transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2)).save_pretrained(folder)
        args[2:4] = ["-m", folder]
        expected = "no chat template"
    else:
        monkeypatch.syspath_prepend(str(Path(__file__).parent))
        args += ["--scoring", "test_train_command:boom"]
        expected = "the verifier's own bug"
    code, stdout, stderr = backspace(*args)
    assert code == 1
    assert expected in stderr
    assert len(stderr.strip().splitlines()[-1:]) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "out.gguf").exists()


@needs_converter
def test_a_disk_that_fills_while_a_checkpoint_is_written_keeps_the_one_before(sft_run, tmp_path):
    work = killed_after_first_checkpoint(sft_run, tmp_path)
    model_size = (work / "sft" / "checkpoint-20" / "model.safetensors").stat().st_size
    limit = int(model_size * 1.5)  # the model's file fits; the optimiser's, twice as big, fills the "disk"

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([Path(sys.executable).parent / "backspace", "train", "--resume", work],
                            capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert result.returncode == 1
    assert "checkpoint 40 could not be written" in result.stderr
    assert "checkpoint-20 stays" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (work / "sft").glob("checkpoint-*")) == ["checkpoint-20"]
    assert not (work / "sft" / "final").exists()
