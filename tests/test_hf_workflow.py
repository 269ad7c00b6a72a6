"""The fine-tuned-elsewhere workflow of docs/training.md and docs/convert.md, run with the real HF tools on a tiny model made here, with no hub:
an HF tokenizer with <|delete|>, synth --tokenized, TRL's SFTTrainer, save_pretrained, llama.cpp's own
convert_hf_to_gguf.py from the llama-cpp-python sdist, backspace convert --check, and a piped chat. It proves
that the steps fit together, not that the model learns.

`make test` downloads the sdist and names it in BACKSPACE_LLAMA_SDIST; without it the test is skipped."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("datasets")

SDIST = os.environ.get("BACKSPACE_LLAMA_SDIST")
pytestmark = pytest.mark.skipif(
    not SDIST, reason="BACKSPACE_LLAMA_SDIST is unset: `make test` downloads llama-cpp-python's sdist, whose "
    "convert_hf_to_gguf.py this test runs"
)

DELETE = "<|delete|>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", DELETE]
# Not ChatML, so that a step that lost the model's template and fell back to ChatML would show.
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}")
SAMPLES = [{"prompt": f"What is {a}+{b}?", "response": f"{a}+{b} is {a + b}."} for a in range(1, 9) for b in range(2, 6)]

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

# The way past `BPE pre-tokenizer was not recognized` in docs/convert.md.
CONVERT_GPT2_BPE = '''"""convert_hf_to_gguf.py for a self-trained byte-level BPE: its pre-tokenizer is GPT-2's."""
import runpy, sys
from pathlib import Path

script = Path(sys.argv.pop(1)).resolve()  # .../vendor/llama.cpp/convert_hf_to_gguf.py
sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
from conversion.base import TextModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
runpy.run_path(str(script), run_name="__main__")
'''


def backspace(*args, **kwargs) -> subprocess.CompletedProcess:
    command = os.path.join(os.path.dirname(sys.executable), "backspace")
    return subprocess.run([command, *map(str, args)], capture_output=True, text=True, timeout=120, **kwargs)


def python(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def make_model(folder: Path) -> None:
    """A byte-level BPE trained here with <|delete|> among its special tokens, and a random tiny Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{s['prompt']} {s['response']}" for s in SAMPLES] + ["user assistant system"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>",
                                                     pad_token="<|endoftext|>", chat_template=TEMPLATE)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)


def vendored_converter(destination: Path) -> Path:
    """llama.cpp's converter as the sdist vendors it, with the conversion/ and gguf-py/ beside it."""
    llama_cpp = "vendor/llama.cpp/"
    keep = (llama_cpp + "convert_hf_to_gguf.py", llama_cpp + "conversion", llama_cpp + "gguf-py")
    with tarfile.open(SDIST) as sdist:  # NAME-VERSION/vendor/...: the first part of each path is the sdist's
        members = [m for m in sdist.getmembers() if m.name.partition("/")[2].startswith(keep)]
        sdist.extractall(destination, members=members, filter="data")
    (script,) = destination.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py")
    return script


def test_the_hf_workflow_from_a_tokenizer_to_a_chat(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
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

    # llama.cpp's converter, vendored in the sdist: it refuses a self-trained BPE as docs/convert.md says...
    script = vendored_converter(tmp_path / "sdist")
    gguf_file = tmp_path / "my-finetune.gguf"
    run = python(script, finetune, "--outfile", gguf_file, "--outtype", "f32", env=env)
    assert run.returncode != 0 and "NotImplementedError: BPE pre-tokenizer was not recognized" in run.stderr
    # ...and converts it through the wrapper in docs/convert.md, which names GPT-2's pre-tokenizer.
    (tmp_path / "convert_gpt2_bpe.py").write_text(CONVERT_GPT2_BPE)
    run = python(tmp_path / "convert_gpt2_bpe.py", script, finetune, "--outfile", gguf_file, "--outtype", "f32",
                 env=env)
    assert run.returncode == 0, run.stderr[-3000:]

    run = backspace("convert", gguf_file, "--check")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("mode: mark\n")  # <|delete|> came through as the tokenizer's special token
    assert f"marked the existing token '{DELETE}' (id {delete_id}, was CONTROL)" in run.stdout
    assert "--check: logits bit-identical" in run.stdout

    run = backspace("chat", "-m", tmp_path / "my-finetune.backspace.gguf", "-n", "8", "--format", "jsonl",
                    input="What is 3+4?\n")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["prompt_tokens"] > 0
    assert "no delete token" not in run.stderr
