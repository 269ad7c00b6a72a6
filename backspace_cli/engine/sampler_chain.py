"""llama.cpp's own sampler chain (top-k, top-p, temperature, the draw), run on a few candidates."""
import ctypes
import weakref

import llama_cpp
import numpy as np

# llama_token_data, as numpy sees it: candidates are written into it as records.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class SamplerChain:
    """Draws one of the candidates written into `candidates`, seeded: the same seed, the same draws.

    The candidates are the few that survive min-p, not the vocabulary: handing llama.cpp every token
    would first write a 12-byte record per token (3 MiB a step for 262,144 tokens).
    """

    def __init__(self, top_k: int, top_p: float, temp: float, seed: int | None) -> None:
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        self._chain = llama_cpp.llama_sampler_chain_init(params)
        weakref.finalize(self, llama_cpp.llama_sampler_free, self._chain)  # frees the samplers it owns too
        seed = llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFF_FFFF  # the default: a random seed
        for sampler in (
            llama_cpp.llama_sampler_init_top_k(top_k),  # k <= 0 keeps all
            llama_cpp.llama_sampler_init_top_p(top_p, 1),  # p >= 1 keeps all
            llama_cpp.llama_sampler_init_temp(temp),
            llama_cpp.llama_sampler_init_dist(seed),
        ):
            llama_cpp.llama_sampler_chain_add(self._chain, sampler)
        self._array = llama_cpp.llama_token_data_array()
        self._array_pointer = ctypes.pointer(self._array)
        self._allocate(0)

    def reserve(self, size: int) -> None:
        """Make room for `size` candidates in `candidates`, and in its `ids` and `logits` views."""
        if size > len(self.candidates):
            self._allocate(size)

    def _allocate(self, size: int) -> None:
        self.candidates = np.zeros(size, dtype=TOKEN_DATA)
        self.ids, self.logits = self.candidates["id"], self.candidates["logit"]
        self._array.data = self.candidates.ctypes.data_as(llama_cpp.llama_token_data_p)

    def draw(self, size: int) -> int:
        """One of the first `size` candidates."""
        array = self._array
        array.size, array.selected, array.sorted = size, -1, False
        llama_cpp.llama_sampler_apply(self._chain, self._array_pointer)
        return int(self.ids[array.selected])
