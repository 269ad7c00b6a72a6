"""Tiny models for the trainer's tests, made on the spot: a small Llama from scratch with a tokenizer trained on
a toy task's text, and its export to GGUF through the real converter."""
import json
import os
from pathlib import Path

import pytest

SDIST = os.environ.get("BACKSPACE_LLAMA_SDIST")
needs_converter = pytest.mark.skipif(
    not SDIST, reason="BACKSPACE_LLAMA_SDIST is unset: `make test` downloads llama-cpp-python's sdist, whose "
    "convert_hf_to_gguf.py the export runs")

# A small Llama: a few seconds of training on two cores moves it.
SMALL_LLAMA = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 4, "max_position_embeddings": 160}


def letter_tasks(count: int, start: int = 0) -> list[dict]:
    """Spell a short word backwards: one right answer, and plausible wrong letters all along the way."""
    words = ["cat", "dog", "sun", "map", "pen", "cup", "hat", "box", "key", "jam", "owl", "fig", "bee", "ant",
             "ram", "yak", "elk", "cod", "eel", "hen", "pig", "rat", "bat", "cow", "fox", "gnu", "ape", "emu"]
    tasks = []
    for i in range(start, start + count):
        word = words[i % len(words)] + words[(i * 7 + 3) % len(words)]
        tasks.append({"prompt": f"Reverse {word}", "answer": word[::-1]})
    return tasks


def write_tasks(path: Path, tasks: list[dict]) -> Path:
    path.write_text("".join(json.dumps(task) + "\n" for task in tasks), encoding="utf-8")
    return path


def write_small_config(path: Path) -> Path:
    path.write_text(json.dumps(SMALL_LLAMA), encoding="utf-8")
    return path
