"""OpenAI's response shapes: completions and chat completions, whole and as stream chunks, usage and models."""
import time
import uuid

from ..engine.events import CONTEXT, DELETE_BUDGET, INTERRUPTED, LENGTH, STOP, Delete, Done, Token
from ..render.records import event_record

# Ours onto OpenAI's (which has stop, length, content_filter and tool_calls); ours stays in `backspace`.
FINISH_REASONS = {STOP: "stop", LENGTH: "length", CONTEXT: "length", DELETE_BUDGET: "length", INTERRUPTED: "stop"}


def usage(done: Done) -> dict:
    """OpenAI's token counts, with the deletes and every token generated (deleted ones included) beside them."""
    counts = done.counts
    return {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.tokens,
        "total_tokens": counts.prompt_tokens + counts.tokens,
        "prompt_tokens_details": {"cached_tokens": counts.prompt_tokens - counts.evaluated_prompt_tokens},
        "deletes": counts.deletes,
        "generated_tokens": counts.generated,
    }


def models(model: str, created: int) -> dict:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "backspace"}]}


class Shapes:
    """The objects of one response: they share its id, creation time and model name."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat, self.model = chat, model
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, choices: list, chunk: bool) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def _choice(self, text: str, finish: Done | None, delta: bool) -> dict:
        choice = {"index": 0, "finish_reason": FINISH_REASONS[finish.finish_reason] if finish else None}
        if not self.chat:
            choice.update(text=text, logprobs=None)
        elif delta:
            choice["delta"] = {"content": text} if text else {}
        else:
            choice["message"] = {"role": "assistant", "content": text}
        if finish is not None:
            choice["backspace"] = event_record(finish)  # our finish reason, counts and rates
        return choice

    def whole(self, done: Done) -> dict:
        body = self._envelope([self._choice(done.text, done, delta=False)], chunk=False)
        body["usage"] = usage(done)
        return body

    def start(self) -> dict:
        """A chat stream's first chunk, as OpenAI's: the role, and no text yet."""
        return self._envelope([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                              chunk=True)

    def chunk(self, content: str, edit: Token | Delete | None = None) -> dict:
        """Text that is final; with the edit stream, the event that came with it in `backspace`."""
        choice = self._choice(content, None, delta=True)
        if edit is not None:
            choice["backspace"] = event_record(edit)
        return self._envelope([choice], chunk=True)

    def last(self, done: Done) -> dict:
        return self._envelope([self._choice("", done, delta=True)], chunk=True)

    def usage_chunk(self, done: Done) -> dict:
        """stream_options.include_usage: one more chunk, with no choices and the usage."""
        body = self._envelope([], chunk=True)
        body["usage"] = usage(done)
        return body
