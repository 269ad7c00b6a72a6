"""Samplers and logits processors, built by small factory functions; the engine only sees callables."""
import math
from collections.abc import Callable, Sequence

import numpy as np

from ._min_p import min_p as keep_min_p
from .sampler_chain import SamplerChain

# A sampler picks a token id from raw logits. It may modify the array it is given.
Sampler = Callable[[np.ndarray], int]
# A logits processor adjusts logits in place, given the tokens so far, and returns them.
LogitsProcessor = Callable[[Sequence[int], np.ndarray], np.ndarray]


def greedy(logits: np.ndarray) -> int:
    return int(logits.argmax())


def make_sampler(temp: float, top_k: int, top_p: float, min_p: float, seed: int | None) -> Sampler:
    """Greedy at temp 0; otherwise min-p, then llama.cpp's top-k, top-p, temperature and draw.

    min-p goes first because it leaves a handful of candidates in one pass over the vocabulary
    (`_min_p.c`, written straight into the chain's buffer): llama.cpp's chain then works on those
    alone, so sampling cost does not grow with the vocabulary (262,144 tokens for Gemma 3) beyond it.
    """
    if temp <= 0:
        return greedy
    chain = SamplerChain(top_k, top_p, temp, seed)
    log_min_p = math.log(min_p) if min_p > 0 else None

    def sample(logits: np.ndarray) -> int:
        chain.reserve(len(logits))
        if log_min_p is None:  # every token is a candidate, except those banned to -inf
            ids = (logits > -math.inf).nonzero()[0]
            size = len(ids)
            chain.ids[:size], chain.logits[:size] = ids, logits[ids]
        else:
            size = keep_min_p(logits, log_min_p, chain.candidates)
        if size == 1:
            return int(chain.ids[0])
        return chain.draw(size)

    return sample


def make_repeat_penalty(penalty: float, last_n: int) -> LogitsProcessor | None:
    """llama.cpp's repetition penalty: recent tokens' logits shrink towards (or further below) zero."""
    if penalty == 1.0:
        return None

    def apply(tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        recent = np.unique(np.asarray(tokens[-last_n:], dtype=np.int64))
        if len(recent):
            values = logits[recent]
            logits[recent] = np.where(values > 0, values / penalty, values * penalty)
        return logits

    return apply


# Up to this many logits, a processor changes them one by one: fancy indexing builds index and value
# arrays first, which costs more than a short loop (bench/NOTES.md).
FEW_UPDATES = 16


def make_logit_bias(bias: dict[int, float]) -> LogitsProcessor | None:
    if not bias:
        return None
    if len(bias) <= FEW_UPDATES:
        pairs = list(bias.items())

        def apply_few(tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
            for token, value in pairs:
                logits[token] += value
            return logits

        return apply_few
    ids = np.fromiter(bias.keys(), dtype=np.int64)
    values = np.fromiter(bias.values(), dtype=np.float32)

    def apply(tokens: Sequence[int], logits: np.ndarray) -> np.ndarray:
        logits[ids] += values
        return logits

    return apply


def make_logits_processors(
    repeat_penalty: float, repeat_last_n: int, logit_bias: dict[int, float]
) -> list[LogitsProcessor]:
    candidates = [make_repeat_penalty(repeat_penalty, repeat_last_n), make_logit_bias(logit_bias)]
    return [processor for processor in candidates if processor is not None]
