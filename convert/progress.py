"""A rich progress bar for the tensor copy, on stderr, shown only when stderr is a terminal."""
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def copy_progress(enabled: bool | None = None) -> Iterator[Callable[[int], Callable[[int], None]] | None]:
    """Yield a `progress(total)` factory for convert_file, or None when no bar should be shown."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = ("Copying tensors", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:

        def start(total: int) -> Callable[[int], None]:
            task = bar.add_task("copy", total=total)
            return lambda done: bar.advance(task, done)

        yield start
