"""Rows in any GGML type: decoding stored rows to float32, and encoding a new float32 row in a tensor's type.

Encoding takes one of two routes, both exact implementations of llama.cpp's formats:
- gguf-py's `gguf.quants` for F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0 and MXFP4;
- for the types gguf-py can only decode (the K-quants Q2_K..Q6_K, and the IQ types), ggml's own
  `ggml_quantize_chunk`, from the libggml that llama-cpp-python ships: the function llama-quantize
  calls. IQ2_XXS, IQ2_XS and IQ1_S cannot be quantized without an importance matrix; the new row gets
  a uniform one (every weight equally important), which is what quantizing without calibration data
  means. `--init copy:TOKEN` avoids any re-quantization: it copies a stored row's bytes exactly.

Decoding, which `--init mean` does to every row of token_embd, uses ggml's own row decoders: the SIMD
F16 and BF16 conversions of its CPU backend (ten times numpy's), and each type's `to_float`.
"""
import ctypes
import sys

import gguf
import numpy as np

from .reader import ConvertError

Q = gguf.GGMLQuantizationType
FLOAT_TYPES = {Q.F32: np.float32, Q.F16: np.float16, Q.F64: np.float64}
INTEGER_TYPES = {Q.I8, Q.I16, Q.I32, Q.I64}
_HOST = gguf.GGUFEndian.BIG if sys.byteorder == "big" else gguf.GGUFEndian.LITTLE


def row_bytes(qtype: Q, n_per_row: int) -> int:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return n_per_row // block_size * type_size


def decode_rows(raw: np.ndarray, qtype: Q, n_per_row: int, endianess: gguf.GGUFEndian) -> np.ndarray:
    """Stored rows (uint8, one row per line) as float32, shape (rows, n_per_row)."""
    if qtype in FLOAT_TYPES and (qtype is not Q.F16 or endianess != _HOST):
        dtype = np.dtype(FLOAT_TYPES[qtype]).newbyteorder(_order(endianess))
        return raw.view(dtype).astype(np.float32)
    _refuse_big_endian(qtype, endianess)
    if qtype in INTEGER_TYPES:
        raise ConvertError(f"token_embd.weight has the integer type {qtype.name}: it cannot hold an embedding")
    to_float = _to_float(qtype)
    if to_float is None:
        raise ConvertError(
            f"ggml cannot decode {qtype.name} rows, so --init mean cannot average them: "
            "use --init zero, --init copy:TOKEN or --rows FILE"
        )
    raw = np.ascontiguousarray(raw)
    values = np.empty((len(raw), n_per_row), dtype=np.float32)
    to_float(raw.ctypes.data, values.ctypes.data, values.size)
    return values


def encode_row(values: np.ndarray, qtype: Q, endianess: gguf.GGUFEndian) -> bytes:
    """One float32 row in `qtype`, as the bytes to append to the tensor."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(1, -1)
    if qtype in FLOAT_TYPES:
        dtype = np.dtype(FLOAT_TYPES[qtype]).newbyteorder(_order(endianess))
        return values.astype(dtype).tobytes()
    _refuse_big_endian(qtype, endianess)
    if qtype in INTEGER_TYPES:
        raise ConvertError(f"cannot write an embedding row in the integer type {qtype.name}")
    block_size = gguf.GGML_QUANT_SIZES[qtype][0]
    if values.shape[1] % block_size:
        raise ConvertError(f"a row of {values.shape[1]} values does not fill whole {qtype.name} blocks of {block_size}")
    try:
        encoded = gguf.quants.quantize(values, qtype)
    except NotImplementedError:  # gguf-py can only decode this type: use ggml's quantizer
        return _ggml_quantize(values, qtype)
    return encoded.tobytes()


def _ggml_quantize(values: np.ndarray, qtype: Q) -> bytes:
    ggml = _libggml()
    size = row_bytes(qtype, values.shape[1])
    out = np.zeros(size, dtype=np.uint8)
    importance = None
    if ggml.ggml_quantize_requires_imatrix(int(qtype)):
        importance = np.ones(values.shape[1], dtype=np.float32)  # uniform: no calibration data
    written = ggml.ggml_quantize_chunk(
        int(qtype),
        values.ctypes.data,
        out.ctypes.data,
        0,
        1,
        values.shape[1],
        importance.ctypes.data if importance is not None else None,
    )
    if written != size:
        raise ConvertError(f"ggml wrote {written} bytes for a {qtype.name} row of {size}")
    return out.tobytes()


_GGML = None
_TO_FLOAT: dict[Q, "ctypes._CFuncPtr | None"] = {}
_ROW_DECODER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    """ggml's `struct ggml_type_traits` (ggml.h), as far as `to_float`."""

    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p)]


def _libggml():
    """llama-cpp-python's libggml, with the functions used here typed (loaded on first use)."""
    global _GGML
    if _GGML is None:
        from llama_cpp import _ggml

        library = _ggml.libggml
        library.ggml_quantize_chunk.restype = ctypes.c_size_t
        library.ggml_quantize_chunk.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
            ctypes.c_void_p,
        ]
        library.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        library.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        library.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        library.ggml_get_type_traits.argtypes = [ctypes.c_int]
        _GGML = library
    return _GGML


def _to_float(qtype: Q):
    """ggml's decoder of `qtype` rows into float32: (source, destination, count) -> None, or None."""
    if qtype not in _TO_FLOAT:
        import llama_cpp

        library = _libggml()
        if qtype is Q.F16:  # the CPU backend's are vectorised; the base library's are scalar
            address = ctypes.cast(library.ggml_cpu_fp16_to_fp32, ctypes.c_void_p).value
        elif qtype is Q.BF16:
            address = ctypes.cast(library.ggml_cpu_bf16_to_fp32, ctypes.c_void_p).value
        elif int(qtype) < llama_cpp.GGML_TYPE_COUNT:  # ggml aborts on a type it does not know
            address = library.ggml_get_type_traits(int(qtype)).contents.to_float
        else:
            address = None
        _TO_FLOAT[qtype] = _ROW_DECODER(address) if address else None
    return _TO_FLOAT[qtype]


def _order(endianess: gguf.GGUFEndian) -> str:
    return ">" if endianess == gguf.GGUFEndian.BIG else "<"


def _refuse_big_endian(qtype: Q, endianess: gguf.GGUFEndian) -> None:
    if endianess != _HOST:
        raise ConvertError(
            f"cannot compute a {qtype.name} row for a file of the other byte order: use --init copy:TOKEN"
        )
