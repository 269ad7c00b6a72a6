"""Where synth's wrong tokens come from: a random vocabulary token, a token of the same reply, or a model's
plausible alternatives."""
from collections.abc import Callable

import llama_cpp
import numpy as np

from ..engine.model import Model
from ..engine.sequence import CacheSequence

MODEL_PREFIX = "model:"


class TextTokens:
    """The tokens of a tokenizer that can stand in a text on their own, and their bytes."""

    def __init__(self, model: Model, excluded: set[int]) -> None:
        self.model = model
        pieces = [model.piece(token) for token in range(model.n_vocab)]
        self.pieces = pieces
        normal = [
            token
            for token in range(model.n_vocab)
            if _is_normal(model, token)
            and token not in excluded
            and _whole_text(pieces[token])
        ]
        if not normal:
            raise ValueError("the tokenizer has no ordinary tokens to make errors from")
        self.usable = np.array(normal, dtype=np.int64)
        self.is_usable = np.zeros(model.n_vocab, dtype=bool)
        self.is_usable[self.usable] = True

    def is_error(self, token: int, rest: bytes) -> bool:
        """A token is a real error only if the true text does not go on with its bytes."""
        return bool(self.is_usable[token]) and not rest.startswith(self.pieces[token])


def _is_normal(model, token: int) -> bool:
    """An ordinary token (not a control, byte or unused one); an HF tokenizer answers for itself."""
    if hasattr(model, "is_normal"):
        return model.is_normal(token)
    return bool(llama_cpp.llama_vocab_get_attr(model.vocab, token) & llama_cpp.LLAMA_TOKEN_ATTR_NORMAL)


def _whole_text(piece: bytes) -> bool:
    if not piece:
        return False
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# A strategy gets the tokens before the error, the bytes of the true text from there on, the true tokens
# of the whole reply, and how many wrong tokens to make; it returns them.
Strategy = Callable[[list[int], bytes, list[int], int], list[int]]


def random_strategy(vocabulary: TextTokens, rng: np.random.Generator) -> Strategy:
    """Any ordinary vocabulary token, uniformly, that is not a correct continuation."""

    def wrong_tokens(context: list[int], rest: bytes, reply: list[int], count: int) -> list[int]:
        first = _draw(vocabulary, rng, lambda token: vocabulary.is_error(token, rest))
        return [first] + [int(rng.choice(vocabulary.usable)) for _ in range(count - 1)]

    return wrong_tokens


def reply_strategy(vocabulary: TextTokens, rng: np.random.Generator) -> Strategy:
    """A token that the same reply uses elsewhere, such as a wrong digit in a number: the slips that are
    hard to tell from the truth. A reply with no such token gets a random one."""
    fallback = random_strategy(vocabulary, rng)

    def wrong_tokens(context: list[int], rest: bytes, reply: list[int], count: int) -> list[int]:
        own = sorted({token for token in reply if vocabulary.is_usable[token]})
        first = [token for token in own if vocabulary.is_error(token, rest)]
        if not first:
            return fallback(context, rest, reply, count)
        return [int(rng.choice(first))] + [int(rng.choice(own)) for _ in range(count - 1)]

    return wrong_tokens


def _draw(vocabulary: TextTokens, rng: np.random.Generator, accept: Callable[[int], bool]) -> int:
    for _ in range(100):
        token = int(rng.choice(vocabulary.usable))
        if accept(token):
            return token
    for token in rng.permutation(vocabulary.usable):  # a tiny vocabulary: look at every token
        if accept(int(token)):
            return int(token)
    raise ValueError("no vocabulary token differs from the true text here")


def model_strategy(vocabulary: TextTokens, rng: np.random.Generator, top_k: int, sequence: CacheSequence) -> Strategy:
    """A plausible mistake: sampled from the model's own top alternatives at that position, never the
    true token. Further wrong tokens of a multi-token error continue the mistake as the model would.
    `sequence` decodes with the model: the session's engine's, as a llama.cpp context has one cache."""
    fallback = random_strategy(vocabulary, rng)

    def logits_after(context: list[int]) -> np.ndarray:
        keep = sequence.common_prefix(context)
        keep = min(keep, len(context) - 1)  # decode at least one token, for fresh logits
        sequence.trim(keep)
        return sequence.feed(context[keep:]).copy()

    def pick(logits: np.ndarray, accept: Callable[[int], bool]) -> int | None:
        ranked = np.argsort(-logits, kind="stable")
        candidates = [int(token) for token in ranked[: top_k * 4] if accept(int(token))][:top_k]
        if not candidates:
            return None
        weights = np.exp(logits[candidates] - logits[candidates].max()).astype(np.float64)
        return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]

    def wrong_tokens(context: list[int], rest: bytes, reply: list[int], count: int) -> list[int]:
        first = pick(logits_after(context), lambda token: vocabulary.is_error(token, rest))
        if first is None:  # the model sees no plausible alternative: fall back to chance
            return fallback(context, rest, reply, count)
        wrong = [first]
        while len(wrong) < count:
            following = pick(logits_after(context + wrong), lambda token: bool(vocabulary.is_usable[token]))
            wrong.append(following if following is not None else int(rng.choice(vocabulary.usable)))
        return wrong

    return wrong_tokens
