"""The fine-tuned-elsewhere workflow of docs/training.md and docs/convert.md, run with the real HF tools on a tiny
model made here, with no hub: an HF tokenizer with <|delete|>, synth --tokenized, TRL's SFTTrainer,
save_pretrained, `backspace convert --check` on the checkpoint folder (llama.cpp's own convert_hf_to_gguf.py from
the llama-cpp-python sdist, then the delete token marked), and a piped chat. It proves that the steps fit
together, not that the model learns.

`make test` downloads the sdist and names it in BACKSPACE_LLAMA_SDIST; without it the test is skipped."""
import json
import os
import subprocess
import sys

import pytest

from hf_checkpoints import DELETE, SAMPLES, SDIST_ENV, SDIST_MISSING, converter_env, make_model

transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("datasets")

pytestmark = pytest.mark.skipif(not os.environ.get(SDIST_ENV), reason=SDIST_MISSING)

# The SFT example of docs/training.md, with a tiny run's settings.
SFT = """
import json, sys
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

model_dir, data, out = sys.argv[1:]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
train = load_dataset("json", data_files=data, split="train")
trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=train,
                     args=SFTConfig(output_dir=out + "-run", max_steps=4, per_device_train_batch_size=8,
                                    learning_rate=1e-3, report_to="none", save_strategy="no", bf16=False,
                                    gradient_checkpointing=False, use_cpu=True, dataloader_num_workers=0))
trainer.train()
trainer.save_model(out)
first = json.loads(open(data).readline())
print(json.dumps({"labels_kept": trainer.train_dataset[0]["labels"] == first["labels"],
                  "loss": trainer.state.log_history[-1].get("train_loss")}))
"""

def backspace(*args, timeout: int = 120, **kwargs) -> subprocess.CompletedProcess:
    command = os.path.join(os.path.dirname(sys.executable), "backspace")
    return subprocess.run([command, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def python(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_the_hf_workflow_from_a_tokenizer_to_a_chat(tmp_path):
    env = converter_env(tmp_path)
    base = tmp_path / "my-model"
    make_model(base)

    # synth, with the HF tokenizer: no GGUF exists yet.
    samples = tmp_path / "train.jsonl"
    samples.write_text("".join(json.dumps(s) + "\n" for s in SAMPLES))
    tokenized = tmp_path / "train.tokenized.jsonl"
    run = backspace("synth", samples, "--tokenizer", base, "--rate", "0.2", "-o", tmp_path / "train.synth.jsonl",
                    "--tokenized", tokenized, "-q")
    assert run.returncode == 0, run.stderr
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    delete_id = tokenizer.convert_tokens_to_ids(DELETE)
    rows = [json.loads(line) for line in tokenized.read_text().splitlines()]
    assert len(rows) == len(SAMPLES)
    assert tokenizer.decode(rows[0]["input_ids"]).startswith("<|im_start|>user: What is 1+2?")  # the model's template
    assert any(delete_id in row["labels"] for row in rows)  # the deletes are learned...
    wrong = [i for row in rows for i, (token, label) in enumerate(zip(row["input_ids"], row["labels"]))
             if label == -100 and i + 1 < len(row["input_ids"]) and row["input_ids"][i + 1] == delete_id]
    assert wrong  # ...and the wrong token before each one is masked

    # A few steps of TRL's SFTTrainer on the tokenized file, as docs/training.md shows it; then save_pretrained.
    (tmp_path / "sft.py").write_text(SFT)
    finetune = tmp_path / "my-finetune"
    run = python(tmp_path / "sft.py", base, tokenized, finetune, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["labels_kept"] is True  # TRL trains on synth's labels as they are, errors masked
    assert (finetune / "config.json").is_file() and (finetune / "tokenizer.json").is_file()

    # One step from the checkpoint folder: llama.cpp's converter, which is told GPT-2's pre-tokenizer for this
    # self-trained byte-level BPE, then <|delete|> marked, as the tokenizer's special token.
    run = backspace("convert", finetune, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"marked the existing token '{DELETE}' (id {delete_id}, was CONTROL)" in run.stderr

    run = backspace("chat", "-m", tmp_path / "my-finetune.backspace.gguf", "-n", "8", "--format", "jsonl",
                    input="What is 3+4?\n")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["prompt_tokens"] > 0
    assert "no delete token" not in run.stderr
