"""Where a prompt comes from: the argument, piped standard input, or both (stdin first)."""
import sys
from typing import TextIO

from backspace_convert.errors import UserError


def read_prompt(argument: str | None, stdin: TextIO | None = None) -> str:
    stdin = sys.stdin if stdin is None else stdin
    parts = []
    # Only a pipe or a file is read: an interactive terminal would block waiting for input.
    if stdin is not None and not stdin.closed and not stdin.isatty():
        piped = stdin.read()
        if piped:
            parts.append(piped.removesuffix("\n"))  # the newline that `echo` adds is not part of it
    if argument:
        parts.append(argument)
    prompt = "\n".join(parts)
    if not prompt.strip():
        raise UserError("empty prompt: give one as an argument or on standard input")
    return prompt
