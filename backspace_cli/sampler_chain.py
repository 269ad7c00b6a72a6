"""llama.cpp's own sampler chain (top-k, top-p, temperature, the draw), run on a few candidates."""
import ctypes
import weakref

import llama_cpp
import numpy as np

# llama_token_data, as numpy sees it: candidates are written in two vectorised assignments.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class SamplerChain:
    """Draws one of the given candidates with llama.cpp's samplers, seeded: the same seed, the same draws.

    Handing llama.cpp the whole vocabulary would first write a 12-byte record per token (3 MiB a step
    for 262,144 tokens); the candidates that survive min-p are a handful.
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
        self._reserve(64)

    def _reserve(self, size: int) -> None:
        self._data = np.zeros(size, dtype=TOKEN_DATA)
        self._ids, self._logits = self._data["id"], self._data["logit"]
        self._array.data = self._data.ctypes.data_as(llama_cpp.llama_token_data_p)

    def draw(self, ids: np.ndarray, logits: np.ndarray) -> int:
        """One of `ids`, whose logits are `logits`."""
        size = len(ids)
        if size > len(self._data):
            self._reserve(2 * size)
        self._ids[:size] = ids
        self._logits[:size] = logits
        array = self._array
        array.size, array.selected, array.sorted = size, -1, False
        llama_cpp.llama_sampler_apply(self._chain, self._array_pointer)
        return int(self._ids[array.selected])
