"""The Python API: load a model, then stream the events of one reply, or take its Done record."""
from collections.abc import Generator
from typing import TYPE_CHECKING

from .engine.events import Done, Event
from .settings import Settings

# The engine loads llama_cpp, so each function imports it when called: `import backspace_cli`, and
# with it `backspace --help`, stays quick.
if TYPE_CHECKING:
    from .engine.prompt import Prompt
    from .engine.session import Session


def load(model: str | None = None, **settings) -> "Session":
    """Open a GGUF model (None: the built-in one); `settings` are Settings' fields, such as temp or seed,
    and sampling left unset takes the model's recommendation, as on the command line."""
    from .engine.session import Session

    return Session(Settings(model=model, **settings))


def stream_generate(session: "Session", prompt: "Prompt") -> Generator[Event, None, None]:
    """Token and Delete events as the reply is written, then one Done; replaying them gives Done.text.
    `prompt`: raw text to continue, or chat messages; no text of either is read for control tokens."""
    from .engine.prompt import prompt_tokens

    return session.generate(prompt_tokens(session.model, prompt))


def generate(session: "Session", prompt: "Prompt") -> Done:
    """The reply's Done record: its final text, why it ended, its counts and timings."""
    from .engine.engine import consume

    return consume(stream_generate(session, prompt), lambda event: None)
