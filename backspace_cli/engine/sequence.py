"""The tokens in llama.cpp's memory for one sequence, kept in agreement with it: feed, and trim back."""
import ctypes

import llama_cpp
import numpy as np

from .model import Model

SEQ_ID = 0


class DecodeError(RuntimeError):
    pass


class CacheSequence:
    """Feeds tokens to llama.cpp and trims them off again, so that `tokens` always mirrors the cache.

    Attention caches trim in place (`llama_memory_seq_rm`). Recurrent and hybrid models cannot drop a
    suffix (the call returns False), so the sequence is rebuilt by replaying the same decode calls
    that built it: the same batches give the same state, bit for bit.
    """

    def __init__(self, model: Model, batch_size: int) -> None:
        self.model = model
        self.tokens: list[int] = []
        self.rebuilds = 0  # how often trimming fell back to a replay
        self._ctx = model.ctx
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # A context has one cache: a new mirror of it starts from an empty one.
        llama_cpp.llama_memory_clear(self._memory, True)
        self._batch_size = batch_size
        self._chunks: list[int] = []  # the sizes of the decode calls that built the cache, in order
        self._logits_address = 0
        self._logits = np.empty(0, dtype=np.float32)
        # A decode step feeds one token: its array and batch are made once, and only the id changes.
        self._one_token = (llama_cpp.llama_token * 1)()
        self._one_token_batch = llama_cpp.llama_batch_get_one(self._one_token, 1)

    def feed(self, tokens: list[int]) -> np.ndarray:
        """Decode `tokens` after the current ones; return the logits after the last (a view into
        llama.cpp's buffer, valid until the next feed)."""
        for start in range(0, len(tokens), self._batch_size):
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
        """Drop every token from index `length` on, from the cache and from `tokens`."""
        if length >= len(self.tokens):
            return
        if not llama_cpp.llama_memory_seq_rm(self._memory, SEQ_ID, length, -1):
            self._rebuild(length)
            return
        del self.tokens[length:]
        self._cut_chunks(length)

    def resync(self) -> None:
        """Drop whatever the cache holds beyond `tokens` (after an interrupted decode)."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, SEQ_ID, len(self.tokens), -1):
            self._rebuild(len(self.tokens))

    def _rebuild(self, length: int) -> None:
        self.rebuilds += 1
        kept = self.tokens[:length]
        self._cut_chunks(length)
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
