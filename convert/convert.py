"""`backspace convert` as a function: read, plan, copy atomically, check; and what it did, with timings."""
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults
from .atomic import atomic_output
from .streaming import copy_with_delete_token, tensor_bytes
from .plan import ConvertSpec, Edit, plan_edit
from .reader import open_gguf
from .sink import GGUFSink
from .verify import check_structure, layout
from .vocab import field_value

# progress(total_bytes) -> a callback taking the bytes copied since its last call
Progress = Callable[[int], Callable[[int], None]]
# check(input, written, n_vocab) -> what it found; it raises ConvertError to stop the output appearing
Check = Callable[[Path, Path, int], Any]


@dataclass
class Result:
    input: Path
    output: Path | None  # None: nothing was written (the input was already converted)
    edit: Edit
    check_result: Any = None  # what the check returned, if one was given
    # seconds: parse, plan, write_metadata, copy_tensors, close, verify, check, sync
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.edit.mode


def default_output(source: Path) -> Path:
    """IN.gguf -> IN.backspace.gguf, next to the input."""
    stem = source.name[: -len(".gguf")] if source.name.endswith(".gguf") else source.name
    return source.with_name(stem + defaults.OUTPUT_SUFFIX)


def convert_file(
    source: str | Path,
    output: str | Path | None = None,
    spec: ConvertSpec = ConvertSpec(),
    *,
    force: bool = False,
    check: Check | None = None,
    progress: Progress | None = None,
) -> Result:
    """Convert `source` into a backspace model at `output`; raises ConvertError with one line. The structure
    check always runs; `check` (--check passes the engine's logits check) runs after it, on the written
    file before it is renamed into place, with the number of the input's tokens."""
    source = Path(source)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    reader = open_gguf(source)
    timings["parse"] = time.perf_counter() - started

    started = time.perf_counter()
    edit = plan_edit(reader, source, spec)
    timings["plan"] = time.perf_counter() - started
    if edit.mode == "none":
        return Result(source, None, edit, timings=timings)

    target = Path(output) if output is not None else default_output(source)
    arch = field_value(reader, "general.architecture")
    with atomic_output(target, force, source=source) as temporary:
        started = time.perf_counter()
        sink = GGUFSink(temporary, arch, reader.endianess, reader.alignment)
        try:
            on_bytes = progress(tensor_bytes(reader)) if progress is not None else None
            copy_with_delete_token(reader, sink, edit, on_bytes, timings)
        finally:
            closing = time.perf_counter()
            sink.close()  # the kernel may write the file back here rather than at the fsync
        timings["close"] = time.perf_counter() - closing
        source_layout = layout(reader)
        del reader  # its string offsets go before the output's are parsed: peak memory is one reader
        # Both checks run before the rename, so an output that fails them never appears.
        started = time.perf_counter()
        check_structure(source_layout, temporary, edit)
        timings["verify"] = time.perf_counter() - started
        check_result = None
        if check:
            started = time.perf_counter()
            n_vocab = edit.token_id if edit.mode == "append" else source_layout.n_vocab
            check_result = check(source, temporary, n_vocab)
            timings["check"] = time.perf_counter() - started
        started = time.perf_counter()
    timings["sync"] = time.perf_counter() - started  # fsync and rename, as the block above closes
    return Result(source, target, edit, check_result, timings)

