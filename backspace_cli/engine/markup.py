"""A rendered chat prompt cut into the template's markup and the messages' text, and its tokens: control tokens
are read in the markup only, so that no message can write one (a turn boundary, a delete) by spelling it out."""
import re
import weakref
from dataclasses import dataclass

import llama_cpp

from .model import Model
from .stopping import Stop, Stopped

# A message's text while the template renders, so that the markup around it can be told apart from it.
# Private-use characters: no template writes them.
STAND_IN = "\ue000{}\ue001"
_STAND_INS = re.compile("\ue000(\\d+)\ue001")
# What llama.cpp reads as a token only when asked to parse special tokens; user-defined tokens it reads in
# any text, as HF tokenizers read added words.
_CONTROL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN

_SPACES = " \t\n\v\f\r"  # C's isspace(): what llama.cpp strips beside a control token that asks it to

Piece = tuple[str, bool]  # (text, whether it is the template's markup)


def stand_ins(messages: list[dict]) -> list[dict]:
    """The messages with each text replaced by its stand-in. Empty texts stay: a template may test for them,
    and they hold nothing to read."""
    return [{**m, "content": STAND_IN.format(i)} if _text(m) else m for i, m in enumerate(messages)]


def pieces(messages: list[dict], with_stand_ins: str, rendered: str) -> list[Piece]:
    """`rendered` (the template run on `messages`) as markup and text, told apart by where `with_stand_ins`
    (the template run on stand_ins(messages)) has each stand-in. The split is exact where the template keeps
    each text or trims its whitespace; a template that changes a text otherwise gets it as written."""
    markups, texts = [], []
    at = 0
    for found in _STAND_INS.finditer(with_stand_ins):
        index = int(found.group(1))
        if index < len(messages) and _text(messages[index]):
            markups.append(with_stand_ins[at:found.start()])
            texts.append(messages[index]["content"])
            at = found.end()
    markups.append(with_stand_ins[at:])
    return _match(rendered, markups, texts) or _interleave(markups, texts)


def _match(rendered: str, markups: list[str], texts: list[str]) -> list[Piece] | None:
    """The pieces whose concatenation is `rendered` exactly, each text as written or trimmed; None if none is."""
    result, at = [], 0
    for markup, text, following in zip(markups, texts, markups[1:]):
        if not rendered.startswith(markup, at):
            return None
        at += len(markup)
        for form in dict.fromkeys((text, text.strip(), text.lstrip(), text.rstrip())):
            if rendered.startswith(form, at) and rendered.startswith(following, at + len(form)):
                break
        else:
            return None
        result += [(markup, True), (form, False)]
        at += len(form)
    if rendered[at:] != markups[-1]:
        return None
    return result + [(markups[-1], True)]


def _interleave(markups: list[str], texts: list[str]) -> list[Piece]:
    result = [(markups[0], True)]
    for text, markup in zip(texts, markups[1:]):
        result += [(text, False), (markup, True)]
    return result


def tokens(model: Model, prompt: list[Piece], stop: Stop | None = None) -> list[int]:
    """The prompt's tokens. Each run of text between two control tokens is tokenized whole, as llama.cpp
    tokenizes a whole rendered prompt, so a prompt whose messages spell no control token gets those tokens.
    `stop` is asked before each run: no boundary inside one is safe for every tokenizer."""
    controls = _controls(model)
    ids: list[int] = []
    run: list[str] = []
    strip_next = False  # the last control token takes the whitespace after it (llama.cpp's RSTRIP)

    def end_run(strip_end: bool) -> None:
        if stop is not None and stop():
            raise Stopped()
        text = "".join(run)
        text = text.lstrip(_SPACES) if strip_next else text
        text = text.rstrip(_SPACES) if strip_end else text
        if text:
            ids.extend(model.tokenize(text, add_bos=False, special=False))
        run.clear()

    for text, is_markup in prompt:
        if not is_markup or controls is None:
            run.append(text)
            continue
        pattern, found = controls
        for n, part in enumerate(pattern.split(text)):  # text, control, text, ..., text
            if n % 2:
                control = found[part]
                end_run(control.lstrip)
                ids.append(control.id)
                strip_next = control.rstrip
            else:
                run.append(part)
    end_run(False)
    return ids


@dataclass(frozen=True)
class _Control:
    id: int
    lstrip: bool  # it takes the whitespace before it
    rstrip: bool  # and after it


_CONTROLS: "weakref.WeakKeyDictionary[Model, tuple[re.Pattern, dict[str, _Control]] | None]" = (
    weakref.WeakKeyDictionary()
)


def _controls(model: Model) -> tuple[re.Pattern, dict[str, _Control]] | None:
    """A pattern that finds the vocabulary's control tokens in text, longest first as llama.cpp does, and
    what each is; None if it has none."""
    if model not in _CONTROLS:
        found: dict[str, _Control] = {}
        for token in range(model.n_vocab):
            attributes = llama_cpp.llama_vocab_get_attr(model.vocab, token)
            if attributes & _CONTROL:
                text = llama_cpp.llama_vocab_get_text(model.vocab, token).decode("utf-8", errors="replace")
                if text and text not in found:
                    found[text] = _Control(token, bool(attributes & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
                                           bool(attributes & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP))
        longest_first = sorted(found, key=len, reverse=True)
        pattern = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")
        _CONTROLS[model] = (pattern, found) if found else None
    return _CONTROLS[model]


def _text(message: dict) -> bool:
    return isinstance(message.get("content"), str) and message["content"] != ""
