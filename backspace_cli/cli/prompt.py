"""Where a prompt comes from: the argument, piped standard input, or both (stdin first)."""
import sys
from typing import TextIO

from backspace_convert.errors import UserError

from ..data.jsonl import is_text


def read_prompt(argument: str | None, stdin: TextIO | None = None) -> str:
    stdin = sys.stdin if stdin is None else stdin
    parts = []
    # Only a pipe or a file is read: an interactive terminal would block waiting for input.
    if stdin is not None and not stdin.closed and not stdin.isatty():
        piped = _piped_text(stdin)
        if piped:
            parts.append(piped.removesuffix("\n"))  # the newline that `echo` adds is not part of it
    if argument:
        if not is_text(argument):  # bytes that are not UTF-8 reach argv as surrogates
            raise UserError("the argument is not UTF-8 text")
        parts.append(argument)
    prompt = "\n".join(parts)
    if not prompt.strip():
        raise UserError("empty prompt: give one as an argument or on standard input")
    return prompt


def _piped_text(stdin: TextIO) -> str:
    try:
        piped = stdin.read()
    except UnicodeDecodeError:
        raise UserError("standard input is not UTF-8 text") from None
    if not is_text(piped):  # a stdin that keeps undecodable bytes as surrogates, as in the C locale
        raise UserError("standard input is not UTF-8 text")
    return piped
