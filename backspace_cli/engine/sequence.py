"""The tokens in llama.cpp's memory for one sequence, kept in agreement with it: feed, and trim back."""
import ctypes

import llama_cpp
import numpy as np

from .. import defaults
from .model import Model
from .state_snapshots import StateSnapshots, has_recurrent_state
from .stopping import Stop, Stopped

SEQ_ID = 0


class DecodeError(RuntimeError):
    pass


class CacheSequence:
    """Feeds tokens to llama.cpp and trims them off again, so that `tokens` always mirrors the cache.

    Attention caches trim in place (`llama_memory_seq_rm`). Recurrent and hybrid models cannot drop a
    suffix of their recurrent state (the call returns False): it is restored from a snapshot kept after
    each of the newest `rewind` decode calls, and the attention part, if any, trims in place. Beyond
    them, the sequence is rebuilt by replaying the same decode calls that built it: the same batches
    give the same state, bit for bit.

    A trim updates `tokens` at once and cuts the cache at the next decode: deletes in a row, which
    decode nothing, cost one cut.
    """

    def __init__(self, model: Model, batch_size: int, rewind: int = defaults.REWIND_WINDOW) -> None:
        self.model = model
        self.tokens: list[int] = []
        self.rebuilds = 0  # how often trimming fell back to a replay
        self.restores = 0  # how often a snapshot of the recurrent state served a trim
        self._ctx = model.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # A context has one cache: a new mirror of it starts from an empty one.
        llama_cpp.llama_memory_clear(self._memory, True)
        self._batch_size = batch_size
        self._chunks: list[int] = []  # the sizes of the decode calls that built the cache, in order
        self._cut: int | None = None  # the length the cache is to be cut to before the next decode
        self.snapshots = StateSnapshots(self._ctx, SEQ_ID, rewind + 1) if has_recurrent_state(model) else None
        self._logits_address = 0
        self._logits = np.empty(0, dtype=np.float32)
        # A decode step feeds one token: its array and batch are made once, and only the id changes.
        self._one_token = (llama_cpp.llama_token * 1)()
        self._one_token_batch = llama_cpp.llama_batch_get_one(self._one_token, 1)

    def feed(self, tokens: list[int], stop: Stop | None = None) -> np.ndarray:
        """Decode `tokens` after the current ones; return the logits after the last (a view into
        llama.cpp's buffer, valid until the next feed). `stop` is asked before each batch: Stopped leaves
        the batches before it decoded, as `self.tokens` says."""
        self._apply_cut()
        for start in range(0, len(tokens), self._batch_size):
            if stop is not None and stop():  # inline: a decode step feeds one token through here
                raise Stopped()
            self._decode(tokens[start : start + self._batch_size])
        return self.logits()

    def logits(self) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, -1)
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if address != self._logits_address:  # llama.cpp moved its buffer: make a new view
            self._logits_address = address
            self._logits = np.ctypeslib.as_array(pointer, shape=(self.model.n_vocab,))
        return self._logits

    def common_prefix(self, tokens: list[int]) -> int:
        """How many leading `tokens` the cache already holds."""
        for i, (held, wanted) in enumerate(zip(self.tokens, tokens)):
            if held != wanted:
                return i
        return min(len(self.tokens), len(tokens))

    def trim(self, length: int) -> None:
        """Drop every token from index `length` on, from `tokens` now and from the cache before the next
        decode."""
        if length >= len(self.tokens):
            return
        del self.tokens[length:]
        self._cut_chunks(length)
        self._cut = length

    def resync(self) -> None:
        """Drop whatever the cache holds beyond `tokens` (after an interrupted decode)."""
        self._cut = len(self.tokens)
        self._apply_cut()

    def _apply_cut(self) -> None:
        length = self._cut
        if length is None:
            return
        self._cut = None
        snapshots = self.snapshots
        if snapshots is not None:
            snapshots.forget_after(length)
            if snapshots.restore(length):  # the recurrent state; an attention part trims below
                self.restores += 1
        if not llama_cpp.llama_memory_seq_rm(self._memory, SEQ_ID, length, -1):
            self._rebuild(length)

    def _rebuild(self, length: int) -> None:
        self.rebuilds += 1
        kept = self.tokens[:length]
        chunks = self._chunks
        llama_cpp.llama_memory_seq_rm(self._memory, SEQ_ID, -1, -1)  # a whole sequence always goes
        self.tokens, self._chunks = [], []
        start = 0
        for size in chunks:
            self._decode(kept[start : start + size])
            start += size

    def _cut_chunks(self, length: int) -> None:
        total = sum(self._chunks)
        while total > length:
            excess = total - length
            if self._chunks[-1] <= excess:
                total -= self._chunks.pop()
            else:
                self._chunks[-1] -= excess
                total = length

    def _decode(self, tokens: list[int]) -> None:
        # As llama-bench does: llama_batch_get_one leaves llama.cpp to place the tokens after the cache's
        # last, in sequence 0 (SEQ_ID), with logits for the last token only. Filling a llama_batch field
        # by field through ctypes cost a measurable part of each step (bench/NOTES.md).
        if len(tokens) == 1:
            self._one_token[0] = tokens[0]
            batch = self._one_token_batch
        else:
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            batch = llama_cpp.llama_batch_get_one(array, len(tokens))
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise DecodeError(f"llama_decode failed with status {status}")
        self.tokens.extend(tokens)
        self._chunks.append(len(tokens))
        if self.snapshots is not None:
            self.snapshots.save(len(self.tokens))
