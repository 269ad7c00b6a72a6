"""A second llama.cpp context over a loaded model's weights, with room for several sequences, and the decode calls
that feed them: a prompt on its own, or one token for each of many sequences in one call."""
import ctypes
import weakref

import llama_cpp
import numpy as np

from .model import Model, ModelError
from .sequence import DecodeError


class SequencesContext:
    """`n_seq` sequences, each in its own cache stream as large as the model's context (kv_unified off): a
    sequence's attention then reads its own stream alone, one query a step, as it does in a context of one."""

    def __init__(self, model: Model, n_seq: int, batch_size: int) -> None:
        source = model.llama.context_params
        params = type(source).from_buffer_copy(source)
        params.n_seq_max = n_seq
        params.n_ctx = model.llama.n_ctx() * n_seq  # split evenly among the streams
        params.kv_unified = False
        self.ctx = llama_cpp.llama_init_from_model(model.llama.model, params)
        if not self.ctx:
            raise ModelError(f"llama.cpp could not make a context for {n_seq} sequences of {model.path.name}")
        weakref.finalize(self, llama_cpp.llama_free, self.ctx)
        self.n_vocab = model.n_vocab
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch_size = batch_size
        capacity = max(batch_size, n_seq)
        self._batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        weakref.finalize(self, llama_cpp.llama_batch_free, self._batch)
        batch = self._batch
        self._tokens = np.ctypeslib.as_array(batch.token, shape=(capacity,))
        self._positions = np.ctypeslib.as_array(batch.pos, shape=(capacity,))
        self._seq_counts = np.ctypeslib.as_array(batch.n_seq_id, shape=(capacity,))
        self._wants_logits = np.ctypeslib.as_array(batch.logits, shape=(capacity,))
        self._seq_ids = [batch.seq_id[i] for i in range(capacity)]
        self._seq_counts[:] = 1

    def cut(self, seq: int, length: int) -> None:
        """Drop sequence `seq`'s tokens from position `length` on."""
        if not llama_cpp.llama_memory_seq_rm(self._memory, seq, length, -1):
            raise DecodeError(f"llama.cpp could not trim sequence {seq}")

    def clear(self, seq: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, seq, -1, -1)  # a whole sequence always goes

    def decode_alone(self, seq: int, start: int, tokens: list[int], out: np.ndarray) -> None:
        """Decode `tokens` into `seq` from position `start`, in the batches the single-sequence engine uses,
        and copy the logits after the last into `out`."""
        for offset in range(0, len(tokens), self._batch_size):
            chunk = tokens[offset : offset + self._batch_size]
            size = len(chunk)
            self._tokens[:size] = chunk
            self._positions[:size] = np.arange(start + offset, start + offset + size)
            self._wants_logits[:size] = 0
            self._wants_logits[size - 1] = 1
            for i in range(size):
                self._seq_ids[i][0] = seq
            self._decode(size)
        np.copyto(out, self._row(-1))

    def decode_step(self, steps: list[tuple[int, int, int]], outs: list[np.ndarray]) -> None:
        """One llama_decode call for every (seq, position, token) in `steps`, each with its logits, copied into
        the matching row of `outs`."""
        size = len(steps)
        for i, (seq, position, token) in enumerate(steps):
            self._tokens[i], self._positions[i] = token, position
            self._seq_ids[i][0] = seq
        self._wants_logits[:size] = 1
        self._decode(size)
        for i, out in enumerate(outs):
            np.copyto(out, self._row(i))

    def _decode(self, size: int) -> None:
        self._batch.n_tokens = size
        status = llama_cpp.llama_decode(self.ctx, self._batch)
        if status != 0:
            raise DecodeError(f"llama_decode failed with status {status}")

    def _row(self, index: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
