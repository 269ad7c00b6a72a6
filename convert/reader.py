"""Opening a GGUF file with gguf-py's GGUFReader, guarded: the file checks that the engine makes too, bounded
reads, sane counts, one-line errors."""
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np

from .errors import UserError

GGUF_MAGIC = b"GGUF"
SPLIT_SUFFIX = "-00001-of-"  # llama.cpp's shard names: NAME-00001-of-00003.gguf
# The fewest bytes one item of each kind can take in a file: a count that needs more than the bytes
# left is absurd, and is refused before gguf-py starts a loop over it.
MIN_KV_BYTES = 8 + 1 + 4 + 1  # key length, a one-byte key, value type, a one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8  # name length, name, n_dims, one dim, type, offset
ARRAY = int(gguf.GGUFValueType.ARRAY)  # an int: an enum member's lookup is slow, and runs per item
STRING = int(gguf.GGUFValueType.STRING)
MIN_ITEM_BYTES = {
    STRING: 8,
    ARRAY: 12,
    **{int(value_type): np.dtype(dtype).itemsize for value_type, dtype in gguf.GGUFReader.gguf_scalar_to_np.items()},
}


class ConvertError(UserError):
    """A model file or request that cannot be converted; the message is one line for the user."""


class GuardedReader(gguf.GGUFReader):
    """gguf-py's GGUFReader with three changes that keep its parsing and results as they are.

    - `_get` reads through a plain ndarray view of the memmap, and refuses to read past the end of the
      file. numpy's memmap runs Python code (`__array_finalize__`) for every view it makes, and the
      reader makes two views per vocabulary string: that was most of the time it took to parse a
      model's metadata (bench/NOTES.md). Bounding the reads turns a truncated file into an error
      instead of short arrays.
    - Every count read from the file (KVs, tensors, array items) is checked against the bytes left
      before gguf-py loops over it, so an absurd count fails at once instead of looping for hours.
    - A top-level array of strings or numbers becomes a `LazyArrayField`: gguf-py makes one or two
      views per item up front, slow for a large tokenizer; this makes them when asked for, and its
      `contents()` decodes the items in one go.
    """

    _itemsizes: dict = {}
    reading_tensor_data = False

    def _get(self, offset, dtype, count=1, override_order=None):
        plain = self._plain_data()
        count = int(count)
        itemsize = self._itemsizes.get(dtype)
        if itemsize is None:
            itemsize = self._itemsizes[dtype] = np.dtype(dtype).itemsize
        end = offset + itemsize * count
        if end > len(plain):
            raise _Truncated()
        array = plain[offset:end].view(dtype)
        order = self.byte_order if override_order is None else override_order
        return array if order == "I" else array.view(array.dtype.newbyteorder(order))

    def _left(self, offset: int) -> int:
        return len(self.data) - offset

    def _build_tensor_info(self, offs, count):
        if int(count) * MIN_TENSOR_INFO_BYTES > self._left(offs):
            raise _CannotFit("tensor count", int(count), self._left(offs))
        return super()._build_tensor_info(offs, count)

    def _build_tensors(self, start_offs, fields):
        self.reading_tensor_data = True  # a read past the end from here on is truncated tensor data
        return super()._build_tensors(start_offs, fields)

    def _build_fields(self, offs, count):
        if int(count) * MIN_KV_BYTES > self._left(offs):
            raise _CannotFit("metadata count", int(count), self._left(offs))
        # gguf-py's loop, except that arrays of strings or numbers are parsed lazily.
        for _ in range(count):
            start = offs
            key_length, key = self._get_str(offs)
            offs += int(key_length.nbytes + key.nbytes)
            raw_type = self._get(offs, np.uint32)
            offs += int(raw_type.nbytes)
            head = [key_length, key, raw_type]
            name = str(bytes(key), encoding="utf-8")
            field = self._lazy_array(start, name, head, offs) if raw_type[0] == ARRAY else None
            if field is None:
                size, parts, indices, types = self._get_field_parts(offs, raw_type[0])
                field = gguf.ReaderField(start, name, head + parts, [i + len(head) for i in indices], types)
                offs += size
            else:
                offs = field.parts.end
            self._push_field(field, skip_sum=True)
        return offs

    def _lazy_array(self, start: int, name: str, head: list, offs: int) -> "LazyArrayField | None":
        """An array of strings or of one numeric type, or None for what gguf-py's own loop should
        parse: an empty array, an array of arrays, or an unknown item type (which it refuses)."""
        item_type, length = self._get(offs, np.uint32), self._get(offs + 4, np.uint64)
        kind, count = int(item_type[0]), int(length[0])
        if count == 0 or kind not in MIN_ITEM_BYTES or kind == ARRAY:
            return None
        if count * MIN_ITEM_BYTES[kind] > self._left(offs + 12):
            raise _CannotFit(f"array length at byte {offs}", count, self._left(offs + 12))
        first = offs + 12
        if kind == STRING:
            items = self._string_starts(first, count)
            end = items.pop()
        else:
            items = self._get(first, self.gguf_scalar_to_np[gguf.GGUFValueType(kind)], count)
            end = first + items.nbytes
        parts = LazyArrayParts(self, [*head, item_type, length], items, end)
        types = [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType(kind)]
        return LazyArrayField(start, name, parts, parts.data_indices(), types)

    def _string_starts(self, offs: int, count: int) -> list[int]:
        """Where each of `count` strings from `offs` begins, and then where the last one ends."""
        order = "=" if self.byte_order == "I" else (">" if sys.byteorder == "little" else "<")
        unpack, view = struct.Struct(order + "Q").unpack_from, memoryview(self._plain_data())
        starts = []
        try:
            for _ in range(count):
                starts.append(offs)
                offs += 8 + unpack(view, offs)[0]
        except struct.error:  # a length field past the end of the file
            raise _Truncated() from None
        if offs > len(view):
            raise _Truncated()
        starts.append(offs)
        return starts

    def _plain_data(self) -> np.ndarray:
        plain = self.__dict__.get("_plain")
        if plain is None:
            plain = self._plain = self.data.view(np.ndarray)
        return plain

    def _get_field_parts(self, orig_offs, raw_type):
        if raw_type == ARRAY:
            item_type, length = int(self._get(orig_offs, np.uint32)[0]), int(self._get(orig_offs + 4, np.uint64)[0])
            smallest = MIN_ITEM_BYTES.get(item_type, 1)
            if length * smallest > self._left(orig_offs + 12):
                raise _CannotFit(f"array length at byte {orig_offs}", length, self._left(orig_offs + 12))
        return super()._get_field_parts(orig_offs, raw_type)


class LazyArrayParts(Sequence):
    """The parts list gguf-py's reader makes for an array (the key, the types, the length, then one
    view per number, or a length view and a bytes view per string), each made when it is asked for."""

    def __init__(self, reader: GuardedReader, head: list, items: list[int] | np.ndarray, end: int) -> None:
        self.reader, self.head, self.end = reader, head, end  # end: the file offset after the last item
        self.items = items  # where each string starts, or the numbers themselves
        self.strings = isinstance(items, list)

    def data_indices(self) -> range:
        first = len(self.head) + (1 if self.strings else 0)
        return range(first, len(self), 2 if self.strings else 1)

    def __len__(self) -> int:
        return len(self.head) + len(self.items) * (2 if self.strings else 1)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index < len(self.head):
            return self.head[index]
        if not self.strings:
            item = index - len(self.head)
            return self.items[item : item + 1]
        item, is_text = divmod(index - len(self.head), 2)
        length = self.reader._get(self.items[item], np.uint64)
        return self.reader._get(self.items[item] + 8, np.uint8, length[0]) if is_text else length


class LazyArrayField(gguf.ReaderField):
    """A ReaderField whose parts are a LazyArrayParts; `contents()` gives what gguf-py's gives, with
    all the items decoded in one pass."""

    __slots__ = ()

    def contents(self, index_or_slice: int | slice = slice(None)):
        parts = self.parts
        if isinstance(index_or_slice, int):
            return super().contents(index_or_slice)
        if not parts.strings:
            return parts.items[index_or_slice].tolist()
        return [str(raw, encoding="utf-8") for raw in self.raw_strings()[index_or_slice]]

    def raw_strings(self) -> list[bytes]:
        """The items of an array of strings as the bytes in the file, undecoded: what llama.cpp reads."""
        parts = self.parts
        starts = parts.items
        blob = parts.reader._plain_data()[starts[0] : parts.end].tobytes()
        return [blob[start + 8 - starts[0] : end - starts[0]] for start, end in zip(starts, [*starts[1:], parts.end])]


class _Truncated(ConvertError):
    """A read past the end of the file, turned into a message by open_gguf."""


class _CannotFit(ConvertError):
    """A count too large for the bytes left: an absurd count, or a file cut short after it."""

    def __init__(self, what: str, count: int, left: int) -> None:
        super().__init__(f"truncated or corrupt GGUF header: the {what} {count} cannot fit in the {left} bytes left")


def check_gguf(path: Path, missing: str = "no such file") -> int:
    """The checks made before gguf-py or llama.cpp parses a file, each failure one line (ConvertError):
    it exists (else `missing`), is not a Hugging Face checkpoint (which `backspace convert` turns into a GGUF),
    is a file, is not empty, and has GGUF's magic and a version that both read. Returns its size."""
    if not path.exists():
        raise ConvertError(f"{missing}: {path}")
    checkpoint = _hf_checkpoint(path)
    if checkpoint is not None:
        raise ConvertError(
            f"{path} looks like a Hugging Face checkpoint (config.json, *.safetensors), not a GGUF file: make one "
            f"with `backspace convert {checkpoint}` (docs/convert.md)"
        )
    if not path.is_file():
        raise ConvertError(f"not a file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ConvertError(f"empty file: {path}")
    try:
        with path.open("rb") as file:
            head = file.read(8)
    except OSError as error:
        raise ConvertError(f"cannot read {path}: {error.strerror}") from None
    if head[:4] != GGUF_MAGIC:
        raise ConvertError(f"not a GGUF file (bad magic {head[:4]!r}): {path}")
    if len(head) < 8:
        raise ConvertError(f"truncated GGUF header ({size} bytes): {path}")
    version = int.from_bytes(head[4:], "little")
    if version & 0xFFFF == 0:  # written on a big-endian machine: the reader swaps it
        version = int.from_bytes(head[4:], "big")
    if version not in gguf.gguf_reader.READER_SUPPORTED_VERSIONS:
        supported = " and ".join(str(v) for v in gguf.gguf_reader.READER_SUPPORTED_VERSIONS)
        raise ConvertError(f"unsupported GGUF version {version} (versions {supported} are supported): {path}")
    return size


def _hf_checkpoint(path: Path) -> Path | None:
    """The Hugging Face checkpoint folder that `path` is, or holds the weights of; None for anything else."""
    if not path.is_dir() and path.suffix != ".safetensors":
        return None
    folder = path if path.is_dir() else path.parent
    if (folder / "config.json").is_file() or next(folder.glob("*.safetensors"), None) is not None:
        return folder
    return None


def open_gguf(path: str | Path, missing: str = "no such file") -> GuardedReader:
    """Read a GGUF file's metadata and tensor index, or raise ConvertError with one clear line."""
    path = Path(path)
    size = check_gguf(path, missing)
    reader = GuardedReader.__new__(GuardedReader)  # made first, so a failed parse can say where it was
    try:
        reader.__init__(path, "r")
    except _Truncated:
        where = "tensor data" if reader.reading_tensor_data else "header"
        raise ConvertError(f"truncated GGUF {where} (file ends at byte {size}): {path}") from None
    except _CannotFit as error:
        raise ConvertError(f"{error}: {path}") from None
    except (ValueError, KeyError, IndexError, OverflowError, MemoryError) as error:
        reason = str(error).strip("'\"") or type(error).__name__
        raise ConvertError(f"corrupt GGUF file ({reason}): {path}") from None
    except OSError as error:
        raise ConvertError(f"cannot read {path}: {error.strerror}") from None
    for field in reader.fields.values():  # gguf-py decodes a string when it is asked for, and may fail then
        if field.types == [gguf.GGUFValueType.STRING]:
            try:
                field.parts[-1].tobytes().decode("utf-8")
            except UnicodeDecodeError:
                raise ConvertError(f"corrupt GGUF file ({field.name} is not valid UTF-8): {path}") from None
    if reader.tensors:
        last = max(reader.tensors, key=lambda tensor: tensor.data_offset + tensor.n_bytes)
        if last.data_offset + last.n_bytes > size:
            raise ConvertError(f"truncated GGUF tensor data (file ends at byte {size}): {path}")
    return reader


def is_split(reader: gguf.GGUFReader, path: Path) -> bool:
    field = reader.get_field(gguf.Keys.Split.LLM_KV_SPLIT_COUNT)
    count = field.contents() if field is not None else 0
    return bool(count and count > 1) or SPLIT_SUFFIX in path.name
