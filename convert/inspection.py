"""What `backspace inspect` reports about a GGUF file, as a dict (for --json) and as a rich table."""
from collections import Counter
from pathlib import Path
from typing import Any

import gguf

from . import keys
from .reader import ConvertError, open_gguf
from .validate import TOKENS
from .vocab import Vocabulary, field_value

# Substrings that identify a chat template's family, checked in order.
TEMPLATE_NAMES = (
    ("<|start_header_id|>", "llama3"),
    ("<|im_start|>", "chatml"),
    ("<start_of_turn>", "gemma"),
    ("<|start_of_role|>", "granite"),
    ("<｜User｜>", "deepseek"),
    ("<|user|>", "zephyr / phi-3"),
    ("[INST]", "mistral / llama2"),
    ("<|turn>", "gemma4"),
)


def guess_template(template: str) -> str | None:
    for needle, name in TEMPLATE_NAMES:
        if needle in template:
            return name
    return None


def inspect_model(path: str | Path) -> dict[str, Any]:
    """The facts about a model file that decide how to convert it; JSON-ready."""
    path = Path(path)
    reader = open_gguf(path)
    arch = field_value(reader, gguf.Keys.General.ARCHITECTURE)
    try:
        vocabulary = Vocabulary(reader) if reader.get_field(TOKENS) is not None else None
    except ConvertError:
        vocabulary = None
    template = field_value(reader, gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    status = vocabulary.delete_token() if vocabulary is not None else None
    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    return {
        "path": str(path),
        "architecture": arch,
        "name": field_value(reader, gguf.Keys.General.NAME),
        "parameters": sum(int(tensor.n_elements) for tensor in reader.tensors),
        "context_length": field_value(reader, gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)) if arch else None,
        "vocab_size": len(vocabulary) if vocabulary is not None else None,
        "tokenizer": {
            "model": field_value(reader, gguf.Keys.Tokenizer.MODEL),
            "pre": field_value(reader, gguf.Keys.Tokenizer.PRE),
        },
        "tensor_types": dict(types.most_common()),
        "tensors": len(reader.tensors),
        "chat_template": {"present": template is not None, "name": guess_template(template) if template else None},
        "delete_token": None if status is None else {"id": status.id, "text": status.text, "source": status.source},
        "delete_token_type": None if status is None or status.id is None else vocabulary.type_name(status.id),
        "converter_version": field_value(reader, keys.CONVERTER_VERSION),
        "candidates": [
            {"id": c.id, "text": c.text, "type": c.type} for c in (vocabulary.candidates() if vocabulary else [])
        ],
    }


def render(info: dict[str, Any]):
    """The rich table for a terminal."""
    from rich.table import Table

    table = Table(title=Path(info["path"]).name, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    tokenizer = info["tokenizer"]
    template = info["chat_template"]
    delete = info["delete_token"]
    rows = [
        ("architecture", info["architecture"] or "unknown"),
        ("parameters", f"{info['parameters']:,} ({_short(info['parameters'])})"),
        ("context length", _or_unknown(info["context_length"])),
        ("vocabulary", _or_unknown(info["vocab_size"], "{:,} tokens")),
        ("tokenizer", " / ".join(str(part) for part in (tokenizer["model"], tokenizer["pre"]) if part) or "none"),
        ("tensor types", ", ".join(f"{name} x{count}" for name, count in info["tensor_types"].items()) or "none"),
        ("chat template", ("present" + (f" ({template['name']})" if template["name"] else "")) if template["present"] else "absent"),
    ]
    if delete is None:
        rows.append(("delete token", "none: `backspace convert` adds one"))
    elif delete["id"] is None:
        rows.append(("delete token", f"marker {delete['text']!r} (source: {delete['source']})"))
    else:
        rows.append((
            "delete token",
            f"{delete['text']!r}, id {delete['id']}, type {info['delete_token_type']} (source: {delete['source']})",
        ))
    if info["converter_version"]:
        rows.append(("converted by", info["converter_version"]))
    candidates = info["candidates"]
    rows.append((
        "reusable tokens",
        ", ".join(f"{c['id']} {c['text']!r}" for c in candidates) + "  (backspace convert --reuse ID)" if candidates else "none found",
    ))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def _short(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _or_unknown(value, form: str = "{}") -> str:
    return "unknown" if value is None else form.format(value)
