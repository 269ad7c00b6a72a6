"""How `backspace` answers Ctrl-C and SIGTERM: a command cut short says `interrupted` and exits 130, its
partial outputs removed; a command that has ended is not interrupted. Cheap to import: the entry needs it first."""
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = "interrupted"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended


def exit_interrupted(message: str = INTERRUPTED):
    print(message, file=sys.stderr)
    raise SystemExit(INTERRUPTED_STATUS)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While a command that writes files runs, SIGTERM is Ctrl-C: KeyboardInterrupt, on which every writer
    removes its partial output."""
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (CliRunner in a worker): keep the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ignore_from_now() -> None:
    """The command has ended, its outputs whole or removed: a late Ctrl-C or SIGTERM would only hide its status."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
