"""How synth lays a sample out as tokens: the chat template with each assistant reply cut out to edit."""
from backspace_convert.errors import UserError
from ..engine.chat_template import ChatTemplate, TemplateError
from ..engine.model import Model

# Stand-ins for assistant replies while the template renders, so that the replies can be cut out and
# tokenized on their own. Private-use characters: no real text or template contains them.
SENTINEL = "\ue000{}\ue001"

# (kind, value): ("prompt", ids) not learned; ("reply", text) learned, where errors go; ("end", ids)
# the end of a reply's turn up to its end-of-generation token, learned so that the model stops.
Part = tuple[str, object]


class SampleLayout:
    """Renders conversations as `chat` does (chat_template.ChatTemplate): the model's template, else
    ChatML, with the special tokens (BOS included) written by the template itself."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._template = ChatTemplate(model)

    def chat(self, messages: list[dict], line: int) -> list[Part]:
        stand_ins = [
            {**m, "content": SENTINEL.format(i)} if m["role"] == "assistant" else m for i, m in enumerate(messages)
        ]
        try:
            rendered = self._template.render(stand_ins, add_generation_prompt=False)
        except TemplateError as error:
            raise TemplateError(f"line {line}: {error}") from None
        parts: list[Part] = []
        rest = rendered
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before, found, rest = rest.partition(SENTINEL.format(i))
            if not found:
                raise UserError(f"line {line}: the chat template does not keep assistant text as it is")
            self._add_text(parts, before)
            parts.append(("reply", message["content"]))
        self._add_text(parts, rest)
        return parts

    def text(self, text: str) -> list[Part]:
        """A plain text: BOS if the model wants one, then the whole text, learned."""
        bos = self.model.tokenize("", add_bos=True)
        return [("prompt", bos), ("reply", text)]

    def _add_text(self, parts: list[Part], text: str) -> None:
        ids = self.model.tokenize(text, add_bos=False, special=True)
        if parts and parts[-1][0] == "reply":
            for n, token in enumerate(ids):
                if self.model.is_end_of_generation(token):
                    parts.append(("end", ids[: n + 1]))
                    ids = ids[n + 1 :]
                    break
        if ids:
            parts.append(("prompt", ids))
