"""The copy itself: a GGUFReader, a sink and an Edit in; the same model with the delete token out.

The shape follows gguf-py's `gguf_new_metadata.copy_with_new_metadata`: every key-value pair is copied
in its original order with its original type (the virtual GGUF.* fields are skipped: the writer makes
its own header), alignment and byte order are kept, and the header, the key-value data and the tensor
index are written before the tensor data streams in the same order as the input's.
"""
import os
import time
from collections.abc import Callable

import gguf

from .plan import Edit
from .sink import GGUFSink


def copy_with_delete_token(
    reader: gguf.GGUFReader,
    sink: GGUFSink,
    edit: Edit,
    progress: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> None:
    """Write the input with `edit` applied. Pure in the sense that matters: the input is only read,
    and everything the output holds comes from `reader` and `edit`. `timings` gets the seconds spent
    writing the metadata and copying the tensors."""
    started = time.perf_counter()
    replaced = dict(edit.metadata)
    for name, (start, end) in field_spans(reader).items():
        value = replaced.pop(name, None)
        if value is None:
            sink.add_raw_field(name, reader.data[start:end].tobytes())
        else:
            sink.add_key_value(name, value.value, value.type, sub_type=value.sub_type)
    for name, value in replaced.items():  # keys the input did not have, at the end
        sink.add_key_value(name, value.value, value.type, sub_type=value.sub_type)

    for tensor in reader.tensors:
        shape = tensor.data.shape
        if tensor.name in edit.rows:
            shape = (shape[0] + 1, *shape[1:])  # one more row: numpy's first axis is GGML's last
        nbytes = tensor.n_bytes + len(edit.rows.get(tensor.name, b""))
        sink.add_tensor_info(tensor.name, shape, tensor.data.dtype, nbytes, raw_dtype=tensor.tensor_type)

    sink.write_header_to_file()
    sink.write_kv_data_to_file()
    sink.write_ti_data_to_file()
    metadata_done = time.perf_counter()
    source = os.open(reader.data.filename, os.O_RDONLY)
    try:
        for tensor in reader.tensors:
            extra = edit.rows.get(tensor.name, b"")
            sink.write_tensor_from_file(source, tensor.data_offset, tensor.n_bytes, extra, progress)
    finally:
        os.close(source)
    sink.flush()
    if timings is not None:
        timings["write_metadata"] = metadata_done - started
        timings["copy_tensors"] = time.perf_counter() - metadata_done


def field_spans(reader: gguf.GGUFReader) -> dict[str, tuple[int, int]]:
    """Where each real key-value pair lies in the file, from its first key byte to its last value byte.

    The pairs are contiguous, so each ends where the next begins, and the last ends where the tensor
    index begins; only a last pair with no tensors after it needs its parts summed.
    """
    fields = [field for field in reader.fields.values() if not field.name.startswith("GGUF.")]
    starts = [field.offset for field in fields]
    if reader.tensors:
        end = min(tensor.field.offset for tensor in reader.tensors)
    elif fields:
        end = fields[-1].offset + sum(int(part.nbytes) for part in fields[-1].parts)
    else:
        end = 0
    return {field.name: (start, stop) for field, start, stop in zip(fields, starts, [*starts[1:], end])}


def tensor_bytes(reader: gguf.GGUFReader) -> int:
    return sum(tensor.n_bytes for tensor in reader.tensors)

