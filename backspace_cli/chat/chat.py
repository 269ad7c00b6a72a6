"""One chat over one model: each turn fits the history into the context, generates, and records the reply."""
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.chat_template import ChatTemplate
from .conversation import Conversation, Exchange
from ..engine.engine import consume
from backspace_convert.errors import UserError
from ..engine.events import Done, Event
from ..engine.session import Session


class MessageTooLong(UserError):
    pass


@dataclass
class Turn:
    exchange: Exchange
    done: Done
    dropped: int  # the oldest exchanges dropped to make room


class Chat:
    def __init__(self, session: Session, system: str | None = None, history: Conversation | None = None) -> None:
        """A chat that goes on from `history` (a resumed one) if given; `system` rules its system prompt."""
        self.session = session
        self.template = ChatTemplate(session.model)
        self.conversation = history if history is not None else Conversation()
        if system is not None:
            self.conversation.system = system
        self.last: Done | None = None

    def reply_room(self) -> int:
        """Tokens kept free for the reply: max_tokens, but never more than half the context."""
        return min(self.session.settings.max_tokens, self.session.model.n_ctx // 2)

    def fit(self, message: str) -> tuple[list[int], int]:
        """The prompt for `message`, dropping the oldest exchanges (never the system prompt) until it
        fits. A message that cannot fit even alone is refused, and the history stays as it was."""
        n_ctx, exchanges = self.session.model.n_ctx, self.conversation.exchanges
        for skip in range(len(exchanges) + 1):
            tokens = self.template.tokens(self.conversation.messages(pending=message, skip=skip))
            if len(tokens) + self.reply_room() <= n_ctx:
                del exchanges[:skip]
                return tokens, skip
        raise MessageTooLong(
            f"that message needs {len(tokens)} tokens; the context holds {n_ctx}, "
            f"{self.reply_room()} of them kept for the reply"
        )

    def say(self, message: str, handle: Callable[[Event], None], on_drop: Callable[[int], None]) -> Turn:
        tokens, dropped = self.fit(message)
        if dropped:
            on_drop(dropped)
        exchange = Exchange(user=message)

        def record(event: Event) -> None:
            exchange.record(event)
            handle(event)

        done = consume(self.session.generate(tokens), record)
        exchange.reply, exchange.finish_reason = done.text, done.finish_reason
        self.conversation.exchanges.append(exchange)
        self.last = done
        return Turn(exchange, done, dropped)

    def undo(self) -> Exchange | None:
        return self.conversation.exchanges.pop() if self.conversation.exchanges else None
