"""Checking a written output's structure against the input and the edit. (--check's comparison of logits runs
in the engine, the layer that drives llama.cpp, and reaches convert_file as its `check`.)"""
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .streaming import field_spans
from .plan import Edit
from .reader import ConvertError, open_gguf
from .vocab import TokenType

SPOT_BYTES = 4096  # bytes compared at the start and end of every tensor


@dataclass(frozen=True)
class InputLayout:
    """What the structure check needs of the input, without its parsed metadata arrays: the input's
    reader can be freed before the output's is built, so the two never hold their string offsets and
    decoded tokens at once."""

    data: np.ndarray  # the input file, memory-mapped
    alignment: int
    endianess: gguf.GGUFEndian
    spans: dict[str, tuple[int, int]]  # key -> its bytes in the file
    tensors: list[tuple[str, gguf.GGMLQuantizationType, list[int], int, int]]  # name, type, shape, bytes, offset
    n_vocab: int  # tokens in the input's vocabulary (0 without one)


def layout(reader: gguf.GGUFReader) -> InputLayout:
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    return InputLayout(
        reader.data,
        reader.alignment,
        reader.endianess,
        field_spans(reader),
        [(t.name, t.tensor_type, [int(d) for d in t.shape], t.n_bytes, t.data_offset) for t in reader.tensors],
        len(tokens.data) if tokens is not None else 0,
    )


def check_structure(source: InputLayout, output_path: Path, edit: Edit) -> None:
    """Read the output back with GGUFReader and compare it with the input and the edit: every key in its
    place with its type and bytes (or its new value), every tensor with its type, shape and offsets, the
    ends of every tensor's data, and the new rows. Raises ConvertError on the first difference."""
    try:
        output = open_gguf(output_path)
    except ConvertError as error:
        raise ConvertError(f"the output failed its check: {error}") from None

    def fail(what: str):
        raise ConvertError(f"the output failed its check: {what}")

    if output.alignment != source.alignment or output.endianess != source.endianess:
        fail("alignment or byte order changed")
    spans_in, spans_out = source.spans, field_spans(output)
    new_keys = [name for name in edit.metadata if name not in spans_in]
    if list(spans_out) != [*spans_in, *new_keys]:
        fail("the metadata keys differ from the input's")
    for name, (start, end) in spans_out.items():
        expected = edit.metadata.get(name)
        if expected is None:
            begin, stop = spans_in[name]
            if not np.array_equal(source.data[begin:stop], output.data[start:end]):
                fail(f"the key {name} changed")
            continue
        field = output.fields[name]
        if field.types[0] != expected.type or (expected.sub_type is not None and field.types[-1] != expected.sub_type):
            fail(f"the key {name} has the wrong type")
        value = field.contents()
        if expected.type == gguf.GGUFValueType.FLOAT32 or expected.sub_type == gguf.GGUFValueType.FLOAT32:
            same = np.array_equal(np.float32(value), np.float32(expected.value))
        else:
            same = value == expected.value
        if not same:
            fail(f"the key {name} does not hold its new value")
    if edit.token_id is not None:
        types = output.get_field(gguf.Keys.Tokenizer.TOKEN_TYPE)
        if types is None or types.contents(edit.token_id) != TokenType.CONTROL:
            fail("the delete token is not a CONTROL token")

    if [t.name for t in output.tensors] != [name for name, *_ in source.tensors]:
        fail("the tensors differ from the input's")
    for (name, tensor_type, shape, n_bytes, offset), after in zip(source.tensors, output.tensors):
        row = edit.rows.get(name)
        if row is not None:
            shape = [*shape[:-1], shape[-1] + 1]
        if after.tensor_type != tensor_type or list(after.shape) != shape:
            fail(f"{name} has the wrong type or shape")
        if after.n_bytes != n_bytes + len(row or b"") or after.data_offset % output.alignment:
            fail(f"{name} has the wrong size or alignment")
        old, new = source.data[offset : offset + n_bytes], after.data.reshape(-1).view(np.uint8)
        spot = min(SPOT_BYTES, n_bytes)
        if not (np.array_equal(old[:spot], new[:spot]) and np.array_equal(old[n_bytes - spot :], new[n_bytes - spot : n_bytes])):
            fail(f"the data of {name} changed")
        if row is not None and new[n_bytes:].tobytes() != row:
            fail(f"the new row of {name} is not the one planned")
