"""JSON Lines input, as eval's tasks and synth's samples come: one value per non-blank line, and one way to
refuse a line, by its number."""
import json
from collections.abc import Iterable, Iterator

from backspace_convert.errors import UserError


def bad_line(number: int, reason: str) -> UserError:
    """The error for a line of the input that cannot be used: its number, then why."""
    return UserError(f"line {number}: {reason}")


def read_json_lines(lines: Iterable[str], *, text_lines: bool = False) -> Iterator[tuple[int, object]]:
    """(line number, value) for each non-blank line. With text_lines, a line that does not open a JSON
    object is plain text: its value is the line itself, without its newline. Bytes that are not UTF-8
    (read with errors="surrogateescape") and a "\\ud800" escape are refused: no tokenizer takes them."""
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not is_text(line):
            raise bad_line(number, "not UTF-8 text")
        if text_lines and not line.lstrip().startswith("{"):
            yield number, line
            continue
        try:
            value = json.loads(line)
            decoded = json.dumps(value, ensure_ascii=False)  # the text its escapes stand for
        except json.JSONDecodeError as error:
            raise bad_line(number, f"not valid JSON ({error.msg})") from None
        except RecursionError:
            raise bad_line(number, "JSON nested too deeply") from None
        if not is_text(decoded):
            raise bad_line(number, "a \\u escape names half a character (a lone surrogate)")
        yield number, value


def is_text(text: str) -> bool:
    """Whether `text` can be written as UTF-8: no surrogates, from undecodable bytes or a lone escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
