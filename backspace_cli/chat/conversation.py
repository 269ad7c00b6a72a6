"""A chat's history: the system prompt and the exchanges, each reply with its edit events."""
from dataclasses import dataclass, field

from ..engine.events import Delete, Event, Token
from ..render.records import event_record


@dataclass
class Exchange:
    user: str
    reply: str = ""  # the final reply: deleted text removed
    finish_reason: str = ""
    edits: list[dict] = field(default_factory=list)  # every token and delete event of the reply

    def record(self, event: Event) -> None:
        if isinstance(event, (Token, Delete)):
            self.edits.append(event_record(event))

    @classmethod
    def from_json(cls, record: object, number: int) -> "Exchange":
        """Exchange `number` (from 1) of Conversation.to_json, read back; ValueError says what is amiss."""
        if not isinstance(record, dict):
            raise ValueError(f"exchange {number} is not an object")
        user, reply = record.get("user"), record.get("reply")
        finish_reason, edits = record.get("finish_reason", ""), record.get("edits", [])
        if not isinstance(user, str) or not isinstance(reply, str):
            raise ValueError(f"exchange {number} lacks its user message or its reply as text")
        if not isinstance(finish_reason, str) or not isinstance(edits, list) or not all(
            isinstance(edit, dict) and edit.get("type") in ("token", "delete") for edit in edits
        ):
            raise ValueError(f"exchange {number} has a finish_reason or edits of the wrong shape")
        return cls(user, reply, finish_reason, edits)


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

    @classmethod
    def from_json(cls, record: object) -> "Conversation":
        """The inverse of to_json; ValueError says what in `record` is not a conversation."""
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        system, exchanges = record.get("system"), record.get("exchanges")
        if system is not None and not isinstance(system, str):
            raise ValueError("its system prompt is not text")
        if not isinstance(exchanges, list):
            raise ValueError("it has no list of exchanges")
        return cls(system, [Exchange.from_json(exchange, number) for number, exchange in enumerate(exchanges, 1)])
