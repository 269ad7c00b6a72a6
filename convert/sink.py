"""A GGUFWriter that also takes metadata as raw bytes and tensor data as byte ranges of the input file.

gguf-py's writer re-packs every value in Python, one struct.pack per string: for a Llama-3 tokenizer
that is 400,000 calls for keys we do not change. Copying an unchanged key's bytes keeps its value and
type exactly, by construction, and costs one memcpy. The arrays a conversion does change (tokens,
their types and scores) are packed in bulk, into the same bytes as gguf-py's `_pack_val` (tested).
Tensor data moves with os.copy_file_range, in the kernel: no tensor byte passes through Python, and
none stays resident in this process.
"""
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import gguf
import numpy as np

COPY_CHUNK = 64 << 20  # bytes per copy_file_range call: the progress bar moves at this grain
BUFFER_CHUNK = 8 << 20  # bytes per read and write where the kernel cannot copy: memory stays small
ARRAY, STRING = gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING
FALLBACK_ERRORS = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


@dataclass(frozen=True)
class RawField:
    """A key-value pair exactly as it was in the input file: key, type and value bytes."""

    data: bytes


class GGUFSink(gguf.GGUFWriter):
    """The writer that copy_with_delete_token drives: same states and layout as GGUFWriter."""

    def __init__(self, path, arch: str, endianess: gguf.GGUFEndian, alignment: int) -> None:
        super().__init__(path, arch, endianess=endianess)
        # GGUFWriter adds general.architecture first; the copy writes it where the input had it.
        self.kv_data[0].clear()
        self.data_alignment = alignment

    def add_raw_field(self, name: str, data: bytes) -> None:
        self.kv_data[0][name] = RawField(data)

    def write_kv_data_to_file(self) -> None:
        if self.state is not gguf.gguf_writer.WriterState.HEADER:
            raise ValueError(f"Expected output file to contain the header, got {self.state}")
        assert self.fout is not None and len(self.fout) == 1
        kv_bytes = bytearray()
        for key, value in self.kv_data[0].items():
            if isinstance(value, RawField):
                kv_bytes += value.data
            else:
                kv_bytes += self._pack_val(key, gguf.GGUFValueType.STRING, add_vtype=False)
                kv_bytes += self.pack_value(value.value, value.type, value.sub_type)
        self.fout[0].write(kv_bytes)
        self.flush()
        self.state = gguf.gguf_writer.WriterState.KV_DATA

    def pack_value(self, value, value_type: gguf.GGUFValueType, sub_type: gguf.GGUFValueType | None) -> bytes:
        """`_pack_val(value, value_type, add_vtype=True, sub_type=sub_type)`, with a flat array of strings
        or numbers packed in one go instead of one struct.pack per item."""
        number_format = self._simple_value_packing.get(sub_type)
        if value_type != ARRAY or not value or (sub_type != STRING and number_format is None):
            return self._pack_val(value, value_type, add_vtype=True, sub_type=sub_type)
        order = "<" if self.endianess == gguf.GGUFEndian.LITTLE else ">"
        if sub_type == STRING:
            length = struct.Struct(order + "Q").pack
            items = b"".join(length(len(text)) + text for text in (item.encode("utf-8") for item in value))
        else:
            items = np.asarray(value, dtype=np.dtype(order + number_format)).tobytes()
        return struct.pack(order + "IIQ", ARRAY, sub_type, len(value)) + items

    def write_tensor_from_file(
        self, source_fd: int, offset: int, size: int, extra: bytes = b"", progress: Callable[[int], None] | None = None
    ) -> None:
        """The next tensor's data: `size` bytes of the source file from `offset`, then `extra`."""
        state = self.state
        if state is not gguf.gguf_writer.WriterState.TI_DATA and state is not gguf.gguf_writer.WriterState.WEIGHTS:
            raise ValueError(f"Expected output file to contain tensor info or weights, got {state}")
        fout = self.fout[0]
        name = next(iter(self.tensors[0]))
        info = self.tensors[0].pop(name)
        if info.nbytes != size + len(extra):
            raise ValueError(f"{name}: {size + len(extra)} bytes for a tensor of {info.nbytes}")
        self.write_padding(fout, fout.tell())
        fout.flush()
        start = fout.tell()
        copy_range(source_fd, fout.fileno(), offset, start, size, progress)
        fout.seek(start + size)
        fout.write(extra)
        self.write_padding(fout, info.nbytes)
        self.state = gguf.gguf_writer.WriterState.WEIGHTS


def copy_range(source: int, target: int, offset: int, at: int, size: int, progress=None) -> None:
    """Copy `size` bytes from `offset` in one file to `at` in another, in the kernel where it can."""
    done = 0
    use_kernel = hasattr(os, "copy_file_range")
    while done < size:
        count = min(COPY_CHUNK if use_kernel else BUFFER_CHUNK, size - done)
        if use_kernel:
            try:
                copied = os.copy_file_range(source, target, count, offset + done, at + done)
            except OSError as error:
                if error.errno not in FALLBACK_ERRORS:
                    raise
                use_kernel = False
                continue
        else:
            data = os.pread(source, count, offset + done)
            copied = os.pwrite(target, data, at + done)
        if copied == 0:
            raise OSError(errno.EIO, f"the input ended {size - done} bytes early")
        done += copied
        if progress is not None:
            progress(copied)
