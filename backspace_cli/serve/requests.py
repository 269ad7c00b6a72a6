"""Request bodies of /v1/chat/completions and /v1/completions, checked and turned into what the worker runs."""
import json
import re
from dataclasses import dataclass, field

from ..settings import BOUNDS, Settings
from .errors import ApiError

# OpenAI's request fields, and backspace's own, by the Settings field each one sets.
SETTING_FIELDS = {
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",  # OpenAI's newer name for it
    "temperature": "temp",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repeat_penalty",
    "seed": "seed",
    "max_deletes": "max_deletes",
}
ROLES = {"system", "user", "assistant", "developer"}  # developer: OpenAI's newer name for system
MAX_STOPS = 4  # as OpenAI allows
# JSON's \\u escapes can spell half of a UTF-16 pair alone; Python keeps it, and nothing can encode it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class ApiRequest:
    chat: bool
    prompt: str | list[dict[str, str]]  # raw text, or messages for the model's chat template
    stream: bool = False
    edit_stream: bool = False  # backspace's extension: every event, deletes included, in the chunks
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    stop: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the Settings fields that the request sets
    logit_bias: list[tuple[str, float]] = field(default_factory=list)  # (token id or text, bias)


def parse_json(body: bytes) -> dict:
    """The body as a JSON object whose every string is valid Unicode; else a 400."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant)  # Python's json takes NaN and Infinity
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: it nests too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    if any(LONE_SURROGATE.search(text) for text in _strings(value)):
        raise ApiError(400, "the body is not valid JSON: it holds a lone surrogate (\\ud800 to \\udfff), "
                       "which is no character", code="invalid_json")
    return value


def _strings(value):
    """Every string in a parsed JSON value, keys included, walked without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _type_error(name: str, wanted: str) -> ApiError:
    return ApiError(400, f"{name} must be {wanted}", param=name, code="invalid_type")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _setting(name: str, setting: str, value):
    """A request field's value for a Settings field, by the rule that the command line and /set share."""
    if isinstance(value, str):  # JSON has numbers: text is the wrong type here, whatever it spells
        raise _type_error(name, "an integer" if BOUNDS[setting].kind is int else "a number")
    try:
        return Settings.parse(setting, value)
    except ValueError as error:
        raise ApiError(400, f"{name}: {error}", param=name, code="invalid_value") from None


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _type_error(name, "true or false")
    return value


def _content(index: int, content) -> str:
    """A message's text: a string, or OpenAI's list of text parts."""
    name = f"messages[{index}].content"
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in content):
            raise ApiError(400, f"{name}: only text parts are supported", param=name, code="invalid_value")
        return "".join(part["text"] for part in content)
    raise _type_error(name, "a string or a list of text parts")


def _messages(body: dict) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _type_error("messages", "a list of messages")
    if not messages:
        raise ApiError(400, "messages must not be empty", param="messages", code="invalid_value")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _type_error(f"messages[{index}]", "an object with a role and a content")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(400, f"messages[{index}].role must be one of {', '.join(sorted(ROLES))}",
                           param=f"messages[{index}].role", code="invalid_value")
        role = "system" if role == "developer" else role
        parsed.append({"role": role, "content": _content(index, message.get("content"))})
    return parsed


def _prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:  # OpenAI's batch form, with one prompt
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _type_error("prompt", "a string")
    return prompt


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(item, str) and item for item in stops):
        raise _type_error("stop", "a non-empty string or a list of them")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"stop takes at most {MAX_STOPS} strings", param="stop", code="invalid_value")
    return stops


def _logit_bias(body: dict) -> list[tuple[str, float]]:
    """OpenAI's {token id: bias}; a key may also be a token's text, as --logit-bias takes it."""
    bias = body.get("logit_bias")
    if bias is None:
        return []
    if not isinstance(bias, dict):
        raise _type_error("logit_bias", "an object of token: bias")
    return [(token, _setting("logit_bias", "logit_bias", value)) for token, value in bias.items()]


def _unsupported(body: dict) -> None:
    if body.get("n", 1) != 1:
        raise ApiError(400, "n: only one choice per request is supported", param="n", code="invalid_value")
    if body.get("logprobs") not in (None, False) or body.get("echo"):
        name = "logprobs" if body.get("logprobs") not in (None, False) else "echo"
        raise ApiError(400, f"{name} is not supported", param=name, code="invalid_value")


def parse_request(body: dict, chat: bool) -> ApiRequest:
    """Every field checked before anything runs; unset settings stay unset, so that the server's own
    (the command line's, else the model's recommendation, else defaults.py) apply."""
    _unsupported(body)
    settings = {}
    for name, setting in SETTING_FIELDS.items():
        if body.get(name) is not None:
            settings[setting] = _setting(name, setting, body[name])
    if _flag(body, "no_delete"):
        settings["no_delete"] = True
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _type_error("stream_options", "an object")
    return ApiRequest(
        chat=chat,
        prompt=_messages(body) if chat else _prompt(body),
        stream=_flag(body, "stream"),
        edit_stream=_flag(body, "edit_stream"),
        include_usage=_flag(options, "include_usage"),
        stop=_stop(body),
        settings=settings,
        logit_bias=_logit_bias(body),
    )
