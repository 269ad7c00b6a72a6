"""Samplers and logits processors, built by small factory functions; the engine only sees callables."""
import math
import random
from collections.abc import Callable, Sequence

import numpy as np

# A sampler picks a token id from raw logits. It may modify the array it is given.
Sampler = Callable[[np.ndarray], int]
# A logits processor adjusts logits in place, given the tokens so far, and returns them.
LogitsProcessor = Callable[[Sequence[int], np.ndarray], np.ndarray]


def greedy(logits: np.ndarray) -> int:
    return int(logits.argmax())


# Up to this many candidates, the draw runs in plain Python. Right after llama_decode has streamed the
# weights through the caches, each numpy call costs several times what it does warm; a loop over a
# few floats makes fewer calls (bench/NOTES.md).
FEW_CANDIDATES = 64
# Up to this many logits, a processor changes them one by one: fancy indexing builds index and value
# arrays, which cost 51 µs a step against 20 µs for a loop on the 262k-vocabulary model.
FEW_UPDATES = 16


def make_sampler(temp: float, top_k: int, top_p: float, min_p: float, seed: int | None) -> Sampler:
    """Greedy at temp 0; otherwise min-p, then top-k, then top-p, then temperature.

    min-p goes first because it is one vectorised comparison over the whole vocabulary that leaves a
    handful of candidates: everything after it works on those, so sampling cost does not grow with
    the vocabulary (262,144 tokens for Gemma 3).
    """
    if temp <= 0:
        return greedy
    rng = random.Random(seed)
    log_min_p = math.log(min_p) if min_p > 0 else -math.inf

    def sample(logits: np.ndarray) -> int:
        ids = np.flatnonzero(logits >= logits.max() + log_min_p)
        if 0 < top_k < len(ids):
            ids = ids[np.argpartition(logits[ids], -top_k)[-top_k:]]
        if len(ids) == 1:
            return int(ids[0])
        if len(ids) <= FEW_CANDIDATES:
            return _draw_few(logits[ids].tolist(), ids.tolist(), top_p, temp, rng)
        return _draw_many(logits[ids], ids, top_p, temp, rng)

    return sample


def _draw_few(values: list[float], ids: list[int], top_p: float, temp: float, rng: random.Random) -> int:
    ranked = sorted(zip(values, ids), key=lambda pair: -pair[0])
    best = ranked[0][0]
    if top_p < 1.0:
        weights = [math.exp(value - best) for value, _ in ranked]
        needed, running = top_p * sum(weights), 0.0
        for keep, weight in enumerate(weights, 1):
            running += weight
            if running >= needed:
                ranked = ranked[:keep]
                break
    weights = [math.exp((value - best) / temp) for value, _ in ranked]
    left = rng.random() * sum(weights)
    for (_, token), weight in zip(ranked, weights):
        left -= weight
        if left < 0:
            return token
    return ranked[-1][1]


def _draw_many(values: np.ndarray, ids: np.ndarray, top_p: float, temp: float, rng: random.Random) -> int:
    order = np.argsort(-values, kind="stable")
    ids, values = ids[order], values[order].astype(np.float64)
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(_softmax(values)), top_p)) + 1
        ids, values = ids[:keep], values[:keep]
    cumulative = np.cumsum(_softmax(values / temp))
    choice = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return int(ids[min(choice, len(ids) - 1)])


def _softmax(values: np.ndarray) -> np.ndarray:
    exp = np.exp(values - values.max())
    return exp / exp.sum()


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
