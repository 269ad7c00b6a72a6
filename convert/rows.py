"""The new rows that append mode adds to token_embd (and output): trained rows from a file, or an init rule."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .quantize import decode_rows, encode_row, row_bytes
from .reader import ConvertError
from .vocab import Vocabulary

CHUNK_BYTES = 4 << 20  # rows are averaged this many bytes at a time, so memory stays small
EMBEDDING_NAMES = ("embedding", "token_embd", "embed_tokens")  # accepted names in a .safetensors file
OUTPUT_NAMES = ("output", "lm_head")
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": "bf16"}


@dataclass(frozen=True)
class TrainedRows:
    embedding: np.ndarray  # float32, n_embd
    output: np.ndarray | None  # float32, n_embd; None: the file had no output row


def load_rows(path: Path, n_embd: int) -> TrainedRows:
    """Rows exported from the fine-tune: a .npy of shape (n_embd,), (1, n_embd) or (2, n_embd)
    (embedding, then output), or a .safetensors file with an `embedding` and an optional `output`."""
    if not path.is_file():
        raise ConvertError(f"rows file not found: {path}")
    try:
        if path.suffix == ".npy":
            rows = np.load(path, allow_pickle=False)
            rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
            if rows.ndim != 2 or len(rows) not in (1, 2):
                raise ConvertError(f"{path.name} has shape {rows.shape}: expected ({n_embd},), (1, {n_embd}) or (2, {n_embd})")
            embedding, output = rows[0], (rows[1] if len(rows) == 2 else None)
        elif path.suffix == ".safetensors":
            tensors = _read_safetensors(path)
            embedding = _pick(tensors, EMBEDDING_NAMES, path)
            if embedding is None:
                raise ConvertError(f"{path.name} has no embedding row (name it one of {', '.join(EMBEDDING_NAMES)})")
            output = _pick(tensors, OUTPUT_NAMES, path)
        else:
            raise ConvertError(f"rows file must be .npy or .safetensors: {path}")
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as error:
        raise ConvertError(f"cannot read rows file {path}: {error}") from None
    rows = [row for row in (embedding, output) if row is not None]
    for row in rows:
        row = np.asarray(row)
        if row.size != n_embd:
            raise ConvertError(f"rows in {path.name} have {row.size} values; the model's rows have {n_embd}")
        if not np.all(np.isfinite(row.astype(np.float32))):
            raise ConvertError(f"rows in {path.name} contain NaN or infinite values")
    as_float = lambda row: None if row is None else np.asarray(row, dtype=np.float32).reshape(n_embd)  # noqa: E731
    return TrainedRows(as_float(embedding), as_float(output))


def _pick(tensors: dict[str, np.ndarray], names: tuple[str, ...], path: Path) -> np.ndarray | None:
    """The tensor called one of `names`, with or without a module path or a .weight suffix."""
    for name in names:
        for key, value in tensors.items():
            if key.removesuffix(".weight").split(".")[-1] == name:
                return value
    return None


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A .safetensors file: an 8-byte header size, a JSON header, then the raw little-endian tensors."""
    with path.open("rb") as file:
        size = int.from_bytes(file.read(8), "little")
        if size <= 0 or size > 100 << 20:
            raise ValueError("not a safetensors file")
        header = json.loads(file.read(size))
        data = file.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name} has the unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        raw = np.frombuffer(data[start:end], dtype=np.uint8)
        if dtype == "bf16":  # bfloat16 is the top half of a float32
            values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = raw.view(np.dtype(dtype).newbyteorder("<")).astype(np.float32)
        tensors[name] = values.reshape(entry["shape"])
    return tensors


def parse_init(init: str) -> tuple[str, str | None]:
    """`mean`, `zero` or `copy:TOKEN`, as (rule, token)."""
    if init in ("mean", "zero"):
        return init, None
    if init.startswith("copy:") and len(init) > len("copy:"):
        return "copy", init[len("copy:"):]
    raise ConvertError(f"unknown --init {init!r}: use mean, zero or copy:TOKEN")


def new_row(
    reader: gguf.GGUFReader,
    tensor,
    init: str,
    vocabulary: Vocabulary,
    trained: np.ndarray | None,
) -> tuple[bytes, str]:
    """The bytes of the row to append to `tensor`, and how it was made (for the summary)."""
    qtype = gguf.GGMLQuantizationType(tensor.tensor_type)
    n_embd, n_rows = int(tensor.shape[0]), int(tensor.shape[1])
    if trained is not None:
        return encode_row(trained, qtype, reader.endianess), "trained row"
    rule, token = parse_init(init)
    if rule == "copy":
        source = vocabulary.parse(token)
        size = row_bytes(qtype, n_embd)
        return _read(reader, tensor.data_offset + source * size, size), f"copy of token {source}"
    if rule == "zero":
        return encode_row(np.zeros(n_embd, dtype=np.float32), qtype, reader.endianess), "zero"
    return encode_row(mean_row(reader, tensor), qtype, reader.endianess), f"mean of {n_rows} rows"


def mean_row(reader: gguf.GGUFReader, tensor) -> np.ndarray:
    """The mean of a tensor's rows, decoded a chunk at a time with pread (not through the memmap, whose
    pages would stay resident and count against the peak memory)."""
    qtype = gguf.GGMLQuantizationType(tensor.tensor_type)
    n_embd, n_rows = int(tensor.shape[0]), int(tensor.shape[1])
    size = row_bytes(qtype, n_embd)
    per_chunk = max(1, CHUNK_BYTES // size)
    total = np.zeros(n_embd, dtype=np.float64)
    fd = os.open(reader.data.filename, os.O_RDONLY)
    try:
        for start in range(0, n_rows, per_chunk):
            count = min(per_chunk, n_rows - start)
            raw = os.pread(fd, count * size, tensor.data_offset + start * size)
            rows = decode_rows(np.frombuffer(raw, dtype=np.uint8).reshape(count, size), qtype, n_embd, reader.endianess)
            total += rows.sum(axis=0)  # float32 within a chunk, float64 across chunks
    finally:
        os.close(fd)
    return (total / n_rows).astype(np.float32)


def _read(reader: gguf.GGUFReader, offset: int, size: int) -> bytes:
    with open(reader.data.filename, "rb") as file:
        file.seek(offset)
        return file.read(size)
