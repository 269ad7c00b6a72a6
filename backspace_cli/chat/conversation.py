"""A chat's history: the system prompt and the exchanges, each reply with its edit events."""
from dataclasses import dataclass, field

from ..engine.events import Delete, Event, Token


@dataclass
class Exchange:
    user: str
    reply: str = ""  # the final reply: deleted text removed
    finish_reason: str = ""
    edits: list[dict] = field(default_factory=list)  # every token and delete event of the reply

    def record(self, event: Event) -> None:
        if isinstance(event, (Token, Delete)):
            kind = "token" if isinstance(event, Token) else "delete"
            self.edits.append({"type": kind, "id": event.id, "text": event.text})


@dataclass
class Conversation:
    system: str | None = None  # None leaves the model's default system prompt
    exchanges: list[Exchange] = field(default_factory=list)

    def messages(self, pending: str | None = None, skip: int = 0) -> list[dict[str, str]]:
        """The chat as template messages, leaving out the `skip` oldest exchanges."""
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for exchange in self.exchanges[skip:]:
            messages.append({"role": "user", "content": exchange.user})
            messages.append({"role": "assistant", "content": exchange.reply})
        if pending is not None:
            messages.append({"role": "user", "content": pending})
        return messages

    def to_json(self) -> dict:
        return {
            "system": self.system,
            "exchanges": [
                {"user": e.user, "reply": e.reply, "finish_reason": e.finish_reason, "edits": e.edits}
                for e in self.exchanges
            ],
        }
