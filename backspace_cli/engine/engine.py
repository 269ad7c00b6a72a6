"""Delete-aware generation: sample token by token, and on the delete token take the last one back."""
import math
import time
from collections.abc import Callable, Generator, Sequence as Seq

import numpy as np

from .. import defaults
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
from backspace_convert.errors import UserError
from .delete_rules import OVER_BUDGET, REFUSED, DeleteRules, ReplyEdits, judge_delete
from .model import Model
from .sampling import LogitsProcessor, Sampler
from .sequence import CacheSequence
from .stopping import Stop, Stopped
from .text import TokenText


class PromptTooLong(UserError):
    pass


def check_prompt(prompt: list[int], n_ctx: int) -> None:
    """Refuse a prompt that leaves no room in the context for a reply."""
    if not prompt:
        raise ValueError("the prompt is empty")
    if len(prompt) >= n_ctx:
        raise PromptTooLong(f"the prompt is {len(prompt)} tokens; the context holds {n_ctx}")


class _Reply(ReplyEdits):
    """The reply so far, as the delete rules see it, and its text."""

    def __init__(self, window: int) -> None:
        super().__init__(window)
        self.text = TokenText()

    def append(self, token: int, piece: bytes) -> Token:
        self.push(token)
        return Token(token, self.text.push(piece))

    def take_last(self) -> Delete:
        return Delete(self.pop(), self.text.pop())


class LogitsWindow:
    """The raw logits of the newest positions, so that a delete restores a distribution for free.

    Memory is (window + 2) * n_vocab * 4 bytes, allocated once per engine: the saved rows, and one that
    a restored row is copied into, since the sampler may change the logits it is given.
    """

    def __init__(self, window: int, n_vocab: int) -> None:
        self.rows = np.empty((window + 1, n_vocab), dtype=np.float32)
        self._restored = np.empty(n_vocab, dtype=np.float32)

    def save(self, index: int, logits: np.ndarray) -> None:
        np.copyto(self.rows[index % len(self.rows)], logits)

    def load(self, index: int) -> np.ndarray:
        """A copy of the row saved at `index`, valid until the next load."""
        np.copyto(self._restored, self.rows[index % len(self.rows)])
        return self._restored


class _NoWindow:
    """The window of a reply that cannot delete: it allocates nothing, and a decode step copies no row."""

    def save(self, index: int, logits: np.ndarray) -> None:
        pass

    def load(self, index: int) -> np.ndarray:
        raise LookupError("a reply that cannot delete keeps no logits")  # no delete reaches here


_NO_WINDOW = _NoWindow()


class Engine:
    """Owns a model's cache across calls, so a chat re-evaluates only what changed."""

    def __init__(self, model: Model, batch_size: int = defaults.BATCH_SIZE,
                 sequence: CacheSequence | None = None) -> None:
        """`sequence`: the cache it drives; by default the model's own context, sequence 0. A batch gives each
        of its replies one of its own sequences instead (batch.SlotSequence, which does what CacheSequence
        does)."""
        self.model = model
        self.sequence = sequence or CacheSequence(model, batch_size)
        self._logits_window: LogitsWindow | None = None

    def _window(self, rules: DeleteRules) -> LogitsWindow | _NoWindow:
        """The engine's one window, made anew only when a reply asks for another size. Saved logits serve
        only a delete: a reply that cannot delete gets the window that keeps nothing."""
        if not rules.takes_back:
            return _NO_WINDOW
        window = self._logits_window
        if window is None or len(window.rows) != rules.window + 1:
            window = self._logits_window = LogitsWindow(rules.window, self.model.n_vocab)
        return window

    def generate(
        self,
        prompt: list[int],
        *,
        sampler: Sampler,
        logits_processors: Seq[LogitsProcessor] = (),
        max_tokens: int = defaults.MAX_TOKENS,
        rules: DeleteRules = DeleteRules(token_id=None),
        stop: Stop | None = None,
    ) -> Generator[Event, None, None]:
        """Yield Token and Delete events, then one Done. The prompt is never deleted. `stop`, asked between
        the prompt's decode batches, ends the reply as an interrupted one before its prompt is all decoded."""
        check_prompt(prompt, self.model.n_ctx)
        return self._generate(prompt, sampler, logits_processors, max_tokens, rules, stop)

    def _generate(self, prompt, sampler, processors, max_tokens, rules, stop) -> Generator[Event, None, None]:
        model, sequence = self.model, self.sequence
        # With deletes off the delete token is banned; a marker is still recognised, to be rolled back.
        delete_token = rules.token_id if rules.enabled else None
        marker = rules.marker
        # Marker mode: the newest tokens that may begin the marker, shown once they cannot. A marker
        # is never shown; it reads as one delete of the token before it.
        held: list[Token] = []
        started = time.perf_counter()
        first_token_at = prompt_done = None
        reused = appended = deletes = refused = 0
        reply = _Reply(rules.window)
        finish = STOP
        try:
            # Reuse the cached prefix; at least the last prompt token is decoded, for its logits.
            reused = min(sequence.common_prefix(prompt), len(prompt) - 1)
            sequence.trim(reused)
            logits = sequence.feed(prompt[reused:], stop)
            prompt_done = time.perf_counter()
            window = self._window(rules)
            window.save(0, logits)
            while True:
                index = len(reply.tokens)
                if index >= max_tokens:
                    finish = LENGTH
                    break
                if len(prompt) + index >= model.n_ctx:
                    finish = CONTEXT
                    break
                for process in processors:
                    logits = process(sequence.tokens, logits)
                for banned in reply.bans(rules):  # a few at most: one by one is cheaper than fancy indexing
                    logits[banned] = -math.inf
                token = sampler(logits)
                if first_token_at is None:
                    first_token_at = time.perf_counter()

                if token == delete_token:
                    trigger, start = 0, token  # the delete token: it never enters the reply
                else:
                    if model.is_end_of_generation(token):
                        finish = STOP
                        break
                    appended += 1
                    event = reply.append(token, model.piece(token))
                    if not marker:
                        yield event
                        logits = sequence.feed([token])
                        window.save(len(reply.tokens), logits)
                        continue
                    held.append(event)
                    trigger = reply.text.suffix_pieces(marker)
                    while len(held) > (trigger or reply.text.prefix_pieces(marker)):
                        yield held.pop(0)
                    if not trigger:
                        logits = sequence.feed([token])
                        window.save(len(reply.tokens), logits)
                        continue
                    held.clear()  # the marker's own tokens
                    start = reply.tokens[-trigger]  # the model wrote the marker: a delete in ordinary tokens

                # A delete of the last token, asked by the reply's last `trigger` tokens (a marker, never
                # shown), which go first.
                verdict = judge_delete(rules, reply, deletes, hidden=trigger)
                if verdict == REFUSED:  # deletes off, or nothing to delete
                    yield from self._take_back(reply, len(prompt), hidden=trigger)
                    refused += 1 if rules.enabled else 0  # with deletes off, a marker is no delete
                    reply.refuse(start)
                elif verdict == OVER_BUDGET:
                    yield from self._take_back(reply, len(prompt), hidden=trigger)
                    finish = DELETE_BUDGET
                    break
                else:
                    deletes += 1
                    deleted = reply.tokens[-trigger - 1]
                    yield from self._take_back(reply, len(prompt), hidden=trigger, shown=1)
                    reply.record_delete(deleted, start, ban=rules.ban_deleted)
                logits = window.load(len(reply.tokens))  # the saved distribution, for a retry
            yield from held  # the reply ended on text that only began like the marker
        except (KeyboardInterrupt, Stopped):
            finish = INTERRUPTED
            self._take_back(reply, len(prompt), hidden=len(held))  # never shown, so not in the text
            sequence.resync()
        ended = time.perf_counter()
        prompt_s = (prompt_done or ended) - started
        first = first_token_at or ended
        yield Done(
            finish_reason=finish,
            text=reply.text.text,
            counts=Counts(
                prompt_tokens=len(prompt),
                evaluated_prompt_tokens=min(len(sequence.tokens), len(prompt)) - reused,  # fewer if stopped early
                tokens=len(reply.tokens),
                generated=appended,
                deletes=deletes,
                refused_deletes=refused,
            ),
            timings=Timings(prompt_s=prompt_s, generation_s=ended - first, first_token_s=first - started),
            n_ctx=model.n_ctx,
            context_used=len(sequence.tokens),
        )

    def _take_back(self, reply: _Reply, n_prompt: int, *, hidden: int, shown: int = 0) -> list[Delete]:
        """Remove the reply's last `hidden` tokens (a marker's, never shown), then `shown` more, with a Delete
        each, and trim the cache once (the cut waits for the next decode, so deletes in a row cost one; a
        recurrent model restores a snapshot of its state)."""
        for _ in range(hidden):
            reply.take_last()
        deleted = [reply.take_last() for _ in range(shown)]
        self.sequence.trim(n_prompt + len(reply.tokens))
        return deleted


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
