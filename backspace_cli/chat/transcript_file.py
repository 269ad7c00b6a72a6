"""A chat's transcript file: the JSON that /save (or a chat that llama.cpp ended) writes and `chat --resume` reads."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

from backspace_convert.atomic import atomic_output
from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from .conversation import Conversation
from ..settings import Settings


def write_transcript(path: Path, conversation: Conversation, model: Path, delete_token: DeleteToken | None,
                     settings: Settings) -> None:
    """The chat as JSON, every delete included, with the model, delete token and settings it was held with."""
    record = {
        "model": str(model),
        "delete_token": delete_token.text if delete_token else None,
        "settings": {key: getattr(settings, key) for key in Settings.TUNABLE},
        **conversation.to_json(),
    }
    with atomic_output(path, force=True) as temporary:
        temporary.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")


@dataclass
class SavedChat:
    """What `chat --resume` takes from a transcript: the conversation, and the model it was held with. The
    settings and delete token in the file are not read back: the command line's rule."""

    conversation: Conversation
    model: str | None

    def held_with_another_model(self, model: Path) -> bool:
        if self.model is None:
            return False
        try:
            return not os.path.samefile(self.model, model)
        except OSError:  # the file's model is gone, or was named relative to another directory
            return self.model != str(model)


def read_transcript(path: Path) -> SavedChat:
    """A transcript written by /save, or by a chat that llama.cpp ended; UserError in one line if it is not."""
    refused = f"cannot resume from {path}"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{refused}: no such file") from None
    except OSError as error:
        raise UserError(f"{refused}: {error.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "not UTF-8"
        raise UserError(f"{refused}: not JSON ({reason})") from None
    try:
        conversation = Conversation.from_json(record)
        model = record.get("model")
        if model is not None and not isinstance(model, str):
            raise ValueError("its model is not a path")
    except ValueError as error:
        raise UserError(f"{refused}: not a chat transcript ({error})") from None
    return SavedChat(conversation, model)
