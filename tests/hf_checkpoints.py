"""Tiny Hugging Face checkpoints made here, with no hub: a byte-level BPE trained with `tokenizers` and a random
LlamaForCausalLM, saved with save_pretrained. Needs transformers and torch (the test extra)."""
import os
from pathlib import Path

DELETE = "<|delete|>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", DELETE]
# Not ChatML, so that a step that lost the model's template and fell back to ChatML would show.
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}")
SAMPLES = [{"prompt": f"What is {a}+{b}?", "response": f"{a}+{b} is {a + b}."} for a in range(1, 9) for b in range(2, 6)]
SDIST_ENV = "BACKSPACE_LLAMA_SDIST"  # `make test` names llama-cpp-python's sdist here
SDIST_MISSING = (f"{SDIST_ENV} is unset: `make test` downloads llama-cpp-python's sdist, whose "
                 "convert_hf_to_gguf.py this test runs")


def converter_env(tmp_path: Path) -> dict:
    """The environment for a run of the HF tools: offline, one thread each, the sdist as `make test` names it."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf-cache"),
            "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def make_model(folder: Path, specials: list[str] = SPECIALS, add_prefix_space: bool = False) -> None:
    """A byte-level BPE trained here with `specials` as its special tokens, and a random tiny Llama."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{s['prompt']} {s['response']}" for s in SAMPLES] + ["user assistant system"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
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
