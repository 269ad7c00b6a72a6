"""`backspace convert --check`: both files in llama.cpp on one fixed prompt, and their logits bit-identical."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backspace_convert.reader import ConvertError

from .. import defaults
from .model import ModelError, load_model
from .sequence import CacheSequence

CHECK_PROMPT = "The quick brown fox jumps over the lazy dog. Water is made of hydrogen and oxygen, 1 2 3."


@dataclass(frozen=True)
class LogitsCheck:
    prompt_tokens: int  # the fixed prompt's length
    tokens: int  # logits compared after each decode: every original token


def check_logits(input_path: Path, output_path: Path, n_vocab: int, n_threads: int | None = None) -> LogitsCheck:
    """Load both files in llama.cpp, decode the same fixed prompt (as one batch, then one more token on
    its own, so both kinds of kernel are covered), and require the logits of every original token to
    be bit-identical after each. convert_file takes it as its `check`."""

    def logits_of(path: Path, prompt: list[int] | None) -> tuple[list[int], list[np.ndarray]]:
        try:
            model = load_model(path, n_ctx=defaults.CHECK_CONTEXT_SIZE, n_threads=n_threads)
        except ModelError as error:
            raise ConvertError(f"--check: {error}") from None
        try:
            if prompt is None:
                prompt = model.tokenize(CHECK_PROMPT, add_bos=True, special=False)
            sequence = CacheSequence(model, batch_size=len(prompt))
            rows = [sequence.feed(prompt[:-1])[:n_vocab].copy(), sequence.feed(prompt[-1:])[:n_vocab].copy()]
            del sequence
        finally:
            model.llama.close()
        return prompt, rows

    prompt, before = logits_of(input_path, None)
    _, after = logits_of(output_path, prompt)
    for step, (a, b) in enumerate(zip(before, after)):
        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            differ = int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))
            raise ConvertError(f"--check failed: {differ} of {n_vocab} logits differ after decode {step + 1}")
    return LogitsCheck(len(prompt), n_vocab)
