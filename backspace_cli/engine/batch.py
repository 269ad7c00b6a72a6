"""Many replies stepped together: each step is one llama_decode call with one token for every live reply, and
each reply's events are those the single-sequence Engine gives it alone.

Each reply runs the Engine's own loop (delete rules, bans, budgets, logits window, marker) on a sequence of
its own. The loop asks for a decode by feeding tokens; a batch slot's feed parks the reply in its thread
until the next step has decoded them. Only one thread runs at a time, handing over in turn, so the threads
are coroutines: the replies' Python runs in a fixed order, and every decode happens in the caller's thread.
"""
import threading
from collections.abc import Generator, Iterable, Sequence as Seq
from dataclasses import dataclass

import numpy as np

from .. import defaults
from .batch_context import SequencesContext
from .delete_rules import DeleteRules
from .engine import Engine
from .events import Done, Event
from .model import Model
from .sampling import LogitsProcessor, Sampler
from .state_snapshots import has_recurrent_state
from .stopping import Stop, Stopped

# Said by BatchEngine.notice when it cannot step replies together.
ONE_AT_A_TIME = ("{name} keeps a recurrent state, which a batch does not take back per sequence: "
                 "its replies run one at a time")


@dataclass(frozen=True)
class BatchRequest:
    """One reply to generate, with everything the Engine takes for it; its sampler is its own."""

    prompt: list[int]
    sampler: Sampler
    logits_processors: Seq[LogitsProcessor] = ()
    max_tokens: int = defaults.MAX_TOKENS
    rules: DeleteRules = DeleteRules(token_id=None)
    stop: Stop | None = None  # asked at each of its decodes: once true, it ends as interrupted


class SlotSequence:
    """One sequence of the batch, as the Engine drives a CacheSequence: a feed parks the reply until the batch
    has decoded the tokens, and a trim is carried out on this sequence alone, at its next decode."""

    def __init__(self, slot: "BatchSlot", stop: Stop | None) -> None:
        self.tokens: list[int] = []
        self.cut: int | None = None  # the length to cut the cache to before the next decode
        self._slot, self._stop = slot, stop

    def common_prefix(self, tokens: list[int]) -> int:
        return 0  # a slot starts each reply on an empty sequence

    def trim(self, length: int) -> None:
        if length < len(self.tokens):
            del self.tokens[length:]
            self.cut = length if self.cut is None else min(self.cut, length)

    def resync(self) -> None:
        pass  # a stopped feed decoded nothing: the cache holds `tokens`, less any cut still to come

    def feed(self, tokens: list[int], stop: Stop | None = None) -> np.ndarray:
        # The request's stop, asked on both sides of the wait, since its caller may decide while the batch
        # decodes: the Engine itself asks only between a prompt's batches.
        if self._stop is not None and self._stop():
            raise Stopped()
        logits = self._slot.park(tokens)
        if self._stop is not None and self._stop():
            raise Stopped()
        return logits


class BatchSlot:
    """One reply in its own sequence and thread: it runs until it asks for a decode or ends, then hands back."""

    def __init__(self, seq: int, index: int, model: Model, request: BatchRequest) -> None:
        self.seq, self.index = seq, index  # its sequence id, and its request's place in the run
        self.sequence = SlotSequence(self, request.stop)
        self.logits = np.empty(model.n_vocab, dtype=np.float32)  # its rows of each decode, its own to change
        self.wanted: list[int] = []  # the tokens it waits to have decoded
        self.done = False
        self.running = False
        self._events: list[Event] = []
        self._stop = False
        self._error: BaseException | None = None
        self._turn, self._parked = threading.Semaphore(0), threading.Semaphore(0)
        replies = Engine(model, sequence=self.sequence).generate(  # checks the prompt here, in the caller
            request.prompt, sampler=request.sampler, logits_processors=request.logits_processors,
            max_tokens=request.max_tokens, rules=request.rules)
        self._thread = threading.Thread(target=self._run, args=(replies,), daemon=True)

    @property
    def prompting(self) -> bool:
        """Whether its wanted tokens are decoded on their own: a prompt, not a step's one token."""
        return not self.sequence.tokens or len(self.wanted) != 1

    def _run(self, replies: Generator[Event, None, None]) -> None:
        self._turn.acquire()
        try:
            for event in replies:
                self._events.append(event)  # the caller takes the list at each hand-back
        except BaseException as error:  # handed to the caller's thread, which raises it
            self._error = error
        self.done = True
        self._parked.release()

    def park(self, tokens: list[int]) -> np.ndarray:
        """In the reply's thread: hand back until `tokens` are decoded; their logits, or Stopped."""
        self.wanted = tokens
        self._parked.release()
        self._turn.acquire()
        if self._stop:
            raise Stopped()
        return self.logits

    def resume(self) -> list[Event]:
        """In the caller's thread: let the reply run until it parks or ends; the events it gave meanwhile."""
        if not self._thread.is_alive() and not self.done:
            self._thread.start()
        self.running = True
        self._turn.release()
        self._parked.acquire()
        self.running = False
        if self.done:
            self._thread.join()
        if self._error is not None:
            raise self._error
        events, self._events = self._events, []
        return events

    def stop(self) -> None:
        """End the reply as interrupted, waiting first for it to park if it was running."""
        if self.running:
            self._parked.acquire()
            self.running = False
        self._stop = True
        while not self.done and self._thread.is_alive():
            self._turn.release()
            self._parked.acquire()
        if self._thread.is_alive():
            self._thread.join()


class BatchEngine:
    """Generates many replies over one model, up to `parallel` at once: a request joins when a sequence is free,
    its prompt decoded on its own, and steps with the others from the next step; a finished one frees its
    sequence for the next request."""

    def __init__(self, model: Model, parallel: int, batch_size: int = defaults.BATCH_SIZE) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.model = model
        self.notice: str | None = None  # why replies run one at a time, when they do
        self._context: SequencesContext | None = None
        self._alone: Engine | None = None
        if has_recurrent_state(model):
            self.notice = ONE_AT_A_TIME.format(name=model.path.name)
            self._alone = Engine(model, batch_size)
            parallel = 1
        else:
            self._context = SequencesContext(model, parallel, batch_size)
        self.parallel = parallel

    def run(self, requests: Iterable[BatchRequest]) -> Generator[tuple[int, Event], None, None]:
        """Yield (the request's index, an event) for every request, each request's events in its own order,
        ending with its Done. `requests` is read only while a sequence is free, and read again at each step
        after it ends, so that a queue's iterator may end while it is empty and give more later; the run ends
        once it ends with no reply left."""
        if self._context is None:
            yield from self._one_at_a_time(requests)
            return
        waiting = iter(enumerate(requests))
        free = list(range(self.parallel))
        slots: list[BatchSlot] = []
        try:
            while True:
                while free:  # the next requests join: each runs to its prompt's feed
                    item = next(waiting, None)
                    if item is None:
                        break
                    slots.append(BatchSlot(min(free), item[0], self.model, item[1]))
                    free.remove(slots[-1].seq)
                    yield from self._turn(slots[-1], slots, free)
                if not slots:
                    return
                self._decode(slots)
                for slot in list(slots):
                    yield from self._turn(slot, slots, free)
        finally:
            for slot in slots:
                slot.stop()
                self._context.clear(slot.seq)

    def _turn(self, slot: BatchSlot, slots: list[BatchSlot], free: list[int]
              ) -> Generator[tuple[int, Event], None, None]:
        """Let `slot` run, yielding its events; once it ends, its sequence is free."""
        yield from ((slot.index, event) for event in slot.resume())
        if slot.done:
            slots.remove(slot)
            self._context.clear(slot.seq)
            free.append(slot.seq)

    def _decode(self, slots: list[BatchSlot]) -> None:
        """Carry out each slot's cut, decode the prompts on their own, then one token of every other slot in
        one call."""
        context = self._context
        for slot in slots:
            cut = slot.sequence.cut
            if cut is not None:
                slot.sequence.cut = None
                context.cut(slot.seq, cut)
        stepping = []
        for slot in slots:
            if slot.prompting:
                context.decode_alone(slot.seq, len(slot.sequence.tokens), slot.wanted, slot.logits)
                slot.sequence.tokens.extend(slot.wanted)
            else:
                stepping.append(slot)
        if stepping:
            context.decode_step([(s.seq, len(s.sequence.tokens), s.wanted[0]) for s in stepping],
                                [s.logits for s in stepping])
            for slot in stepping:
                slot.sequence.tokens.append(slot.wanted[0])

    def _one_at_a_time(self, requests: Iterable[BatchRequest]) -> Generator[tuple[int, Event], None, None]:
        for index, request in enumerate(requests):
            replies = self._alone.generate(
                request.prompt, sampler=request.sampler, logits_processors=request.logits_processors,
                max_tokens=request.max_tokens, rules=request.rules, stop=request.stop)
            for event in replies:
                yield index, event
                if request.stop is not None and not isinstance(event, Done) and request.stop():
                    yield index, replies.throw(KeyboardInterrupt())  # the engine's way to end a reply early
                    replies.close()
                    break
