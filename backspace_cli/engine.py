"""Delete-aware generation: sample token by token, and on the delete token take the last one back."""
import math
import time
from collections.abc import Callable, Generator, Iterator, Sequence as Seq
from dataclasses import dataclass, field

import numpy as np

from . import defaults
from .events import (
    CONTEXT,
    DELETE_BUDGET,
    INTERRUPTED,
    LENGTH,
    STOP,
    Counts,
    Delete,
    Done,
    Event,
    Timings,
    Token,
)
from .errors import UserError
from .model import Model
from .sampling import LogitsProcessor, Sampler
from .sequence import Sequence
from .text import TokenText


class PromptTooLong(UserError):
    pass


@dataclass(frozen=True)
class DeleteRules:
    """How the delete token behaves in one reply."""

    token_id: int | None  # None: the model has no delete token, and generation is plain
    enabled: bool = True  # False bans the delete token everywhere (--no-delete, the A/B baseline)
    window: int = defaults.REWIND_WINDOW  # how many of the newest tokens can be deleted
    max_deletes: int = defaults.MAX_DELETES  # deletes per reply; one more ends the reply
    max_per_position: int = defaults.MAX_DELETES_PER_POSITION  # then that position's token stays


@dataclass
class _Position:
    """What is known at one position of the reply, valid only under the prefix it was made under."""

    bans: set[int] = field(default_factory=set)  # tokens that may not be sampled here
    deletes: int = 0  # tokens deleted at this position so far


class LogitsWindow:
    """The raw logits of the newest positions, so that a delete restores a distribution for free.

    Memory is (window + 1) * n_vocab * 4 bytes, allocated once per engine.
    """

    def __init__(self, window: int, n_vocab: int) -> None:
        self.rows = np.empty((window + 1, n_vocab), dtype=np.float32)

    def save(self, index: int, logits: np.ndarray) -> None:
        np.copyto(self.rows[index % len(self.rows)], logits)

    def load(self, index: int, into: np.ndarray) -> np.ndarray:
        np.copyto(into, self.rows[index % len(self.rows)])
        return into


class Engine:
    """Owns a model's cache across calls, so a chat re-evaluates only what changed."""

    def __init__(self, model: Model, batch_size: int = defaults.BATCH_SIZE) -> None:
        self.model = model
        self.sequence = Sequence(model, batch_size)
        self._windows: dict[int, LogitsWindow] = {}
        self._scratch = np.empty(model.n_vocab, dtype=np.float32)

    def _window(self, size: int) -> LogitsWindow:
        if size not in self._windows:
            self._windows = {size: LogitsWindow(size, self.model.n_vocab)}
        return self._windows[size]

    def generate(
        self,
        prompt: list[int],
        *,
        sampler: Sampler,
        logits_processors: Seq[LogitsProcessor] = (),
        max_tokens: int = defaults.MAX_TOKENS,
        rules: DeleteRules = DeleteRules(token_id=None),
    ) -> Iterator[Event]:
        """Yield Token and Delete events, then one Done. The prompt is never deleted."""
        if not prompt:
            raise ValueError("the prompt is empty")
        n_ctx = self.model.n_ctx
        if len(prompt) >= n_ctx:
            raise PromptTooLong(f"the prompt is {len(prompt)} tokens; the context holds {n_ctx}")
        return self._generate(prompt, sampler, logits_processors, max_tokens, rules)

    def _generate(self, prompt, sampler, processors, max_tokens, rules) -> Iterator[Event]:
        model, sequence = self.model, self.sequence
        n_ctx = model.n_ctx
        delete_id = rules.token_id
        started = time.perf_counter()
        first_token_at = prompt_done = None
        reused = 0
        generated: list[int] = []
        text = TokenText()
        appended = deletes = refused = 0
        finish = STOP
        try:
            # Reuse the cached prefix; at least the last prompt token is decoded, for its logits.
            reused = min(_common_prefix(sequence.tokens, prompt), len(prompt) - 1)
            sequence.trim(reused)
            logits = sequence.feed(prompt[reused:])
            prompt_done = time.perf_counter()
            window = self._window(rules.window)
            window.save(0, logits)
            positions = [_Position()]
            final = 0  # generated[:final] is older than the window and can no longer be deleted
            while True:
                index = len(generated)
                if index >= max_tokens:
                    finish = LENGTH
                    break
                if len(prompt) + index >= n_ctx:
                    finish = CONTEXT
                    break
                for process in processors:
                    logits = process(sequence.tokens, logits)
                position = positions[index]
                banned = set(position.bans)
                if delete_id is not None and (
                    not rules.enabled
                    or (index > 0 and positions[index - 1].deletes >= rules.max_per_position)
                ):
                    banned.add(delete_id)
                if banned:
                    logits[list(banned)] = -math.inf
                token = sampler(logits)
                if first_token_at is None:
                    first_token_at = time.perf_counter()

                if token == delete_id:
                    if index == final:  # nothing to delete: the reply is empty, or the rest is final
                        refused += 1
                        position.bans.add(delete_id)
                        logits = window.load(index, self._scratch)
                        continue
                    if deletes >= rules.max_deletes:
                        finish = DELETE_BUDGET
                        break
                    deletes += 1
                    popped = generated.pop()
                    positions.pop()  # its bans were made under the prefix that is now gone
                    sequence.trim(len(prompt) + index - 1)
                    positions[index - 1].bans.add(popped)
                    positions[index - 1].deletes += 1
                    yield Delete(popped, text.pop())
                    logits = window.load(index - 1, self._scratch)
                    continue

                if model.is_end_of_generation(token):
                    finish = STOP
                    break
                generated.append(token)
                appended += 1
                positions.append(_Position())
                final = max(final, len(generated) - rules.window)
                yield Token(token, text.push(model.piece(token)))
                logits = sequence.feed([token])
                window.save(len(generated), logits)
        except KeyboardInterrupt:
            finish = INTERRUPTED
            sequence.resync()
        ended = time.perf_counter()
        prompt_s = (prompt_done or ended) - started
        first = first_token_at or ended
        yield Done(
            finish_reason=finish,
            text=text.text,
            counts=Counts(
                prompt_tokens=len(prompt),
                evaluated_prompt_tokens=len(prompt) - reused,
                tokens=len(generated),
                generated=appended,
                deletes=deletes,
                refused_deletes=refused,
            ),
            timings=Timings(prompt_s=prompt_s, generation_s=ended - first, first_token_s=first - started),
            n_ctx=n_ctx,
            context_used=len(sequence.tokens),
        )


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def consume(events: Generator[Event, None, None], handle: Callable[[Event], None]) -> Done:
    """Feed every event to `handle`; Ctrl-C, even inside `handle`, still ends with Done(interrupted)."""
    done = None
    try:
        for event in events:
            handle(event)
            if isinstance(event, Done):
                done = event
    except KeyboardInterrupt:
        if done is not None:  # the reply had already ended: nothing left to interrupt
            return done
        done = events.throw(KeyboardInterrupt())  # the generator finishes cleanly and yields Done
        handle(done)
    return done
