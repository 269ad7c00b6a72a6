"""Chat prompts from the model's own template (tokenizer.chat_template), run as untrusted code: in jinja2's
sandbox, bounded in time and size, and every failure one line that names the template."""
import sys
import time
from collections.abc import Iterator

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .. import defaults
from backspace_convert.errors import UserError
from . import markup
from .model import Model
from .stopping import Stop

# For models that ship no template: ChatML, the format most small instruct models are tuned on.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
COMPILED_AS = "<template>"  # the file name jinja2 gives a template's code: the frames the deadline watches


class TemplateError(UserError):
    """A chat template that cannot render these messages: a bug in it, or more time or text than it may take."""


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """jinja2's sandbox, where one operator can make no string, list or number bigger than a prompt may be.
    (The sandbox already caps range() at 100,000 items; loops are bounded by the deadline.)"""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "*" and isinstance(right, (str, list, tuple)):
            left, right = right, left
        if operator == "*" and isinstance(left, (str, list, tuple)) and isinstance(right, int):
            if len(left) * right > defaults.TEMPLATE_MAX_CHARS:
                raise _TooBig()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 64:
            raise _TooBig()
        return super().call_binop(context, operator, left, right)


class _TooBig(Exception):
    pass


class _TooSlow(Exception):
    pass


class ChatTemplate:
    """The model's template (else ChatML), set up as llama-cpp-python's Jinja2ChatFormatter does, for
    chat, eval, serve and synth alike."""

    def __init__(self, model: Model, chatml: bool = False) -> None:
        """`chatml`: use ChatML even though the model has a template (chat's way on when the model's fails)."""
        own = None if chatml else model.metadata.get("tokenizer.chat_template")
        self.source = "the model's" if own else ("ChatML" if chatml else "ChatML (the model has none)")
        self._model = model
        llama = model.llama
        self._names = {
            "eos_token": model.token_text(llama.token_eos()) if llama.token_eos() >= 0 else "",
            "bos_token": model.token_text(llama.token_bos()) if llama.token_bos() >= 0 else "",
            "raise_exception": _raise_exception,
            "strftime_now": Jinja2ChatFormatter.strftime_now,
        }
        environment = _BoundedEnvironment(
            loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
            extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        environment.filters["tojson"] = Jinja2ChatFormatter.tojson
        try:
            self._template = environment.from_string(own or CHATML)
        except jinja2.TemplateError as error:
            raise TemplateError(f"the chat template ({self.source}) does not parse: {_one_line(error)}") from None

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text, or TemplateError: the template raised, or ran past its time or size."""
        chunks = self._template.generate(messages=messages, add_generation_prompt=add_generation_prompt, **self._names)
        try:
            return "".join(_bounded(chunks))
        except _TooSlow:
            reason = f"took more than {defaults.TEMPLATE_SECONDS:g} s"
        except _TooBig:
            reason = f"made more than {defaults.TEMPLATE_MAX_CHARS} characters"
        except Exception as error:  # jinja2 and the template's own code raise many types; all mean this template
            reason = f"failed: {_one_line(error)}"
        raise TemplateError(f"the chat template ({self.source}) {reason}")

    def tokens(self, messages: list[dict[str, str]], stop: Stop | None = None) -> list[int]:
        """The prompt's tokens, where only the template's own markup (BOS included) is read for control
        tokens: each message's text is text, whatever it spells. `stop`: as markup.tokens asks it."""
        for number, message in enumerate(messages, 1):
            if not isinstance(message.get("content"), str):
                raise UserError(f"message {number}'s content is not text")
        rendered = self.render(messages)
        with_stand_ins = self.render(markup.stand_ins(messages))
        return markup.tokens(self._model, markup.pieces(messages, with_stand_ins, rendered), stop)


def _bounded(chunks: Iterator[str]) -> Iterator[str]:
    """The template's output while it stays within the size limit and the deadline, which a trace on the
    template's own frames checks at every line it runs: a loop that writes nothing is stopped too."""
    deadline = time.monotonic() + defaults.TEMPLATE_SECONDS

    def watch(frame, event, arg):
        if time.monotonic() > deadline:
            raise _TooSlow()
        return watch

    def trace(frame, event, arg):
        return watch if frame.f_code.co_filename == COMPILED_AS else None

    previous, size = sys.gettrace(), 0
    sys.settrace(trace)
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > defaults.TEMPLATE_MAX_CHARS:
                raise _TooBig()
            yield chunk
    finally:
        sys.settrace(previous)


def _raise_exception(message: str):
    raise ValueError(message)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
