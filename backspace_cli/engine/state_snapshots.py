"""Snapshots of a recurrent or hybrid model's recurrent state at the newest lengths of a sequence, so that
trimming restores one instead of replaying the sequence."""
import ctypes

import llama_cpp
import numpy as np

from .. import defaults
from .model import Model

# LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY (llama.h): only the recurrent state, never the attention cache, which
# trims in place. Not exported by the Python bindings.
PARTIAL_ONLY = 1


def has_recurrent_state(model: Model) -> bool:
    return bool(llama_cpp.llama_model_is_recurrent(model.llama.model)
                or llama_cpp.llama_model_is_hybrid(model.llama.model))


class StateSnapshots:
    """The recurrent state of one sequence after each of its newest lengths, in a ring of slots.

    llama.cpp's own rollback (llama_context_params.n_rs_seq) cannot serve a delete: it keeps the states
    within the last decode call only, and the engine decodes one token per call (bench/NOTES.md). So the
    state is copied out after every decode call (llama_state_seq_get_data_ext) and copied back in to trim.
    Memory: `count` slots of the state's size, capped at defaults.STATE_SNAPSHOT_BYTES, allocated at the
    first save.
    """

    def __init__(self, ctx: llama_cpp.llama_context_p, seq_id: int, count: int) -> None:
        self._ctx, self._seq_id, self._count = ctx, seq_id, count
        self._size = 0
        self._lengths: list[int] = []  # the length each slot's state was saved at; -1: none
        self._pointers: list = []

    def _allocate(self) -> None:
        self._size = llama_cpp.llama_state_seq_get_size_ext(self._ctx, self._seq_id, PARTIAL_ONLY)
        count = max(1, min(self._count, defaults.STATE_SNAPSHOT_BYTES // max(1, self._size)))
        self._rows = np.empty((count, self._size), dtype=np.uint8)
        pointer = ctypes.POINTER(ctypes.c_uint8)
        self._pointers = [ctypes.cast(row.ctypes.data, pointer) for row in self._rows]
        self._lengths = [-1] * count

    def save(self, length: int) -> None:
        """Keep the state as it is now, when the sequence holds `length` tokens."""
        if not self._pointers:
            self._allocate()
        slot = length % len(self._pointers)
        written = llama_cpp.llama_state_seq_get_data_ext(
            self._ctx, self._pointers[slot], self._size, self._seq_id, PARTIAL_ONLY)
        self._lengths[slot] = length if written == self._size else -1  # 0: no longer fits its slot

    def restore(self, length: int) -> bool:
        """Put back the state saved at `length`; False if none is kept."""
        if length <= 0 or not self._pointers:
            return False
        slot = length % len(self._pointers)
        if self._lengths[slot] != length:
            return False
        return llama_cpp.llama_state_seq_set_data_ext(
            self._ctx, self._pointers[slot], self._size, self._seq_id, PARTIAL_ONLY) == self._size

    def forget_after(self, length: int) -> None:
        """The tokens beyond `length` are gone: so are the states saved after them."""
        self._lengths = [saved if saved <= length else -1 for saved in self._lengths]

    @property
    def bytes(self) -> int:
        return len(self._pointers) * self._size
