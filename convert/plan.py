"""Deciding what a conversion does: the mode, the delete token, the metadata to rewrite and the rows to add."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from . import defaults, keys
from .reader import ConvertError, is_split
from .rows import load_rows, new_row, parse_init
from .validate import EMBEDDING, OUTPUT, SCORES, TOKEN_TYPES, TOKENS, check_shapes
from .vocab import TokenType, Vocabulary, field_value

MODES = keys.MODES
V = gguf.GGUFValueType
APPENDED_SCORE = -1000.0  # what llama.cpp's convert_hf_to_gguf.py gives added tokens
MAX_NAMED = 3  # reusable tokens named in the warning when append is chosen over them


@dataclass(frozen=True)
class ConvertSpec:
    """What the user asked for."""

    mode: str = "auto"  # auto picks mark, reuse or append; or one of MODES, to insist
    token: str = keys.DELETE_TOKEN_TEXT  # the delete token's text
    reuse: str | None = None  # reuse: the id or text of the token to rename to `token`
    rows: Path | None = None  # append: trained rows (.npy or .safetensors)
    init: str | None = None  # append without rows: mean (the default), zero or copy:TOKEN
    marker: str | None = None  # marker: the plain text that the model writes to mean delete
    metadata: dict[str, "Value"] = field(default_factory=dict)  # more keys to write, such as a trainer's sampling


@dataclass(frozen=True)
class Value:
    """A metadata value as GGUFWriter.add_key_value takes it."""

    value: Any
    type: gguf.GGUFValueType
    sub_type: gguf.GGUFValueType | None = None


@dataclass
class Edit:
    """The resolved change: what copy_with_delete_token writes. Everything not named here is copied."""

    mode: str  # mark, reuse, append, marker, or "none" for a file that is already converted
    token_id: int | None = None
    token: str | None = None
    marker: str | None = None
    metadata: dict[str, Value] = field(default_factory=dict)  # replaced keys in place, new keys at the end
    rows: dict[str, bytes] = field(default_factory=dict)  # tensor name -> the row appended to it
    summary: str = ""
    warnings: list[str] = field(default_factory=list)


def plan_edit(reader: gguf.GGUFReader, path: Path, spec: ConvertSpec) -> Edit:
    edit = _plan_delete_token(reader, path, spec)
    if edit.mode != "none":
        edit.metadata.update(spec.metadata)
    return edit


def _plan_delete_token(reader: gguf.GGUFReader, path: Path, spec: ConvertSpec) -> Edit:
    if spec.mode not in MODES:
        raise ConvertError(f"unknown mode {spec.mode!r}: use one of {', '.join(MODES)}")
    if is_split(reader, path):
        raise ConvertError(
            f"split GGUF files are not supported: merge the shards first with "
            f"`llama-gguf-split --merge {path.name} merged.gguf`, then convert the merged file"
        )
    arch = field_value(reader, gguf.Keys.General.ARCHITECTURE)
    if arch is None:
        raise ConvertError("the model has no general.architecture")
    mode = _mode(spec)
    already = _already_converted(reader, spec, mode)
    if already is not None:
        return already
    if mode == "marker":
        return _marker(spec)
    vocabulary = Vocabulary(reader)
    check_shapes(reader, len(vocabulary))
    if mode == "auto":
        mode = "mark" if vocabulary.find(spec.token) is not None else "append"
    if mode != "append" and (spec.rows is not None or spec.init is not None):
        existing = vocabulary.find(spec.token)
        why = f"{spec.token!r} is already token {existing}" if mode == "mark" and existing is not None else f"this is {mode} mode"
        raise ConvertError(f"--rows and --init only apply to append mode, but {why}: {mode} mode changes no tensor")
    if mode == "mark":
        return _mark(vocabulary, spec)
    if mode == "reuse":
        return _reuse(vocabulary, spec)
    edit = _append(reader, vocabulary, arch, spec)
    if spec.mode == "auto":  # append was chosen, not asked for: the fine-tune may have trained a reserved token
        edit.warnings += _reusable(vocabulary)
    return edit


def _mode(spec: ConvertSpec) -> str:
    if spec.marker is not None and spec.mode not in ("auto", "marker"):
        raise ConvertError(f"--marker cannot be combined with {spec.mode} mode")
    if spec.reuse is not None and spec.mode not in ("auto", "reuse"):
        raise ConvertError(f"--reuse cannot be combined with {spec.mode} mode")
    if spec.marker is not None and spec.reuse is not None:
        raise ConvertError("--marker and --reuse cannot be combined: a marker is not a token")
    if spec.mode == "marker" and spec.marker is None:
        raise ConvertError('marker mode needs the marker text: --marker "[DELETE]"')
    if spec.mode == "reuse" and spec.reuse is None:
        raise ConvertError("reuse mode needs the token to rename: --reuse ID_OR_TEXT")
    if spec.marker is not None:
        return "marker"
    if spec.reuse is not None:
        return "reuse"
    return spec.mode


def _already_converted(reader: gguf.GGUFReader, spec: ConvertSpec, mode: str) -> Edit | None:
    """A converted file is never converted again: the same request is a no-op, another one an error."""
    token_id = field_value(reader, keys.DELETE_TOKEN_ID)
    marker = field_value(reader, keys.DELETE_MARKER)
    if token_id is None and marker is None:
        return None
    if token_id is not None:
        text = field_value(reader, keys.DELETE_TOKEN) or ""
        found = f"delete token {text!r} (id {token_id})"
        same = mode in ("auto", "mark", "append") and spec.token == text and spec.rows is None and spec.init is None
    else:
        found = f"delete marker {marker!r}"
        same = mode == "marker" and spec.marker == marker
    if not same:
        raise ConvertError(f"already converted: the model has the {found}; refusing to add a second delete token")
    return Edit("none", token_id=token_id, token=text if token_id is not None else None, marker=marker,
                summary=f"already converted: the model has the {found}; nothing to do")


def _keys(token_id: int, text: str) -> dict[str, Value]:
    return {
        keys.DELETE_TOKEN_ID: Value(token_id, V.UINT32),
        keys.DELETE_TOKEN: Value(text, V.STRING),
        keys.CONVERTER_VERSION: Value(keys.VERSION, V.STRING),
    }


def _control(vocabulary: Vocabulary, token_id: int) -> dict[str, Value]:
    """The token_type array with `token_id` made CONTROL, unless it already is."""
    types = list(vocabulary.types) if vocabulary.types is not None else [int(TokenType.NORMAL)] * len(vocabulary)
    if vocabulary.types is not None and types[token_id] == TokenType.CONTROL:
        return {}
    types[token_id] = int(TokenType.CONTROL)
    return {TOKEN_TYPES: Value(types, V.ARRAY, V.INT32)}


def _mark(vocabulary: Vocabulary, spec: ConvertSpec) -> Edit:
    token_id = vocabulary.find(spec.token)
    if token_id is None:
        raise ConvertError(f"{spec.token!r} is not in the vocabulary: nothing to mark (append mode adds it)")
    was = vocabulary.type_name(token_id)
    metadata = {**_control(vocabulary, token_id), **_keys(token_id, spec.token)}
    return Edit("mark", token_id, spec.token, metadata=metadata,
                summary=f"marked the existing token {spec.token!r} (id {token_id}, was {was}) as the delete token")


def _reuse(vocabulary: Vocabulary, spec: ConvertSpec) -> Edit:
    token_id = vocabulary.parse(spec.reuse)
    old = vocabulary.tokens[token_id]
    existing = vocabulary.find(spec.token)
    if existing is not None and existing != token_id:
        raise ConvertError(
            f"cannot rename token {token_id} ({old!r}) to {spec.token!r}: {spec.token!r} is already token {existing} "
            "and would become a duplicate (mark mode uses it as it is)"
        )
    if token_id in vocabulary.special_ids():
        raise ConvertError(f"token {token_id} ({old!r}) is one of the model's special tokens (BOS, EOS, padding...): not reusable")
    edit = Edit("reuse", token_id, spec.token, summary=f"renamed token {token_id} ({old!r}) to {spec.token!r}")
    if token_id not in {candidate.id for candidate in vocabulary.candidates(limit=len(vocabulary))}:
        edit.warnings.append(f"token {token_id} ({old!r}) is not a reserved or unused token: make sure the fine-tune repurposed it")
    tokens = list(vocabulary.tokens)
    tokens[token_id] = spec.token
    edit.metadata = {TOKENS: Value(tokens, V.ARRAY, V.STRING), **_control(vocabulary, token_id), **_keys(token_id, spec.token)}
    return edit


def _append(reader: gguf.GGUFReader, vocabulary: Vocabulary, arch: str, spec: ConvertSpec) -> Edit:
    if vocabulary.find(spec.token) is not None:
        raise ConvertError(
            f"{spec.token!r} is already token {vocabulary.find(spec.token)}: appending it would make a duplicate (mark mode uses it)"
        )
    if spec.rows is not None and spec.init is not None:
        raise ConvertError("--rows and --init are alternatives: give one")
    init = spec.init or defaults.INIT
    parse_init(init)  # refuse a bad rule before any work
    token_id = len(vocabulary)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    embedding, output = tensors[EMBEDDING], tensors.get(OUTPUT)
    trained = load_rows(spec.rows, int(embedding.shape[0])) if spec.rows is not None else None
    rows, how = {}, []
    rows[EMBEDDING], made = new_row(reader, embedding, init, vocabulary, trained.embedding if trained else None)
    how.append(f"{EMBEDDING} ({embedding.tensor_type.name}): {made}")
    if output is not None:
        trained_output = trained.output if trained is not None else None
        rows[OUTPUT], made = new_row(reader, output, init, vocabulary, trained_output)
        how.append(f"{OUTPUT} ({output.tensor_type.name}): {made}")
    elif trained is not None and trained.output is not None:
        raise ConvertError(f"{spec.rows.name} has an output row, but the model ties its embeddings (it has no {OUTPUT})")

    metadata = {TOKENS: Value([*vocabulary.tokens, spec.token], V.ARRAY, V.STRING)}
    types = vocabulary.types if vocabulary.types is not None else [int(TokenType.NORMAL)] * token_id
    metadata[TOKEN_TYPES] = Value([*types, int(TokenType.CONTROL)], V.ARRAY, V.INT32)
    if vocabulary.scores is not None:
        metadata[SCORES] = Value([*vocabulary.scores, APPENDED_SCORE], V.ARRAY, V.FLOAT32)
    size_key = gguf.Keys.LLM.VOCAB_SIZE.format(arch=arch)
    size_field = reader.get_field(size_key)
    if size_field is not None:
        metadata[size_key] = Value(token_id + 1, size_field.types[0])
    metadata.update(_keys(token_id, spec.token))
    edit = Edit("append", token_id, spec.token, metadata=metadata, rows=rows,
                summary=f"appended {spec.token!r} as token {token_id}; new rows: " + "; ".join(how))
    if trained is None:
        edit.warnings.append(f"the new token's rows are not trained (--init {init}): the model will not delete until "
                             "it is trained with them; give the fine-tune's trained rows with --rows FILE")
    return edit


def _reusable(vocabulary: Vocabulary) -> list[str]:
    """A warning naming the reserved or unused tokens, if there are any, that --reuse could rename instead."""
    found = vocabulary.candidates(limit=MAX_NAMED + 1)
    if not found:
        return []
    named = ", ".join(f"{c.text!r} (id {c.id})" for c in found[:MAX_NAMED]) + (", ..." if len(found) > MAX_NAMED else "")
    return [f"appended a new token, but the vocabulary has reserved or unused tokens: {named}; if the fine-tune "
            "trained one of them to delete, convert with --reuse TOKEN instead (backspace inspect lists them)"]


def _marker(spec: ConvertSpec) -> Edit:
    if not spec.marker or not spec.marker.strip():
        raise ConvertError("the marker text is empty")
    metadata = {keys.DELETE_MARKER: Value(spec.marker, V.STRING), keys.CONVERTER_VERSION: Value(keys.VERSION, V.STRING)}
    return Edit("marker", marker=spec.marker, metadata=metadata,
                summary=f"recorded the delete marker {spec.marker!r}; the vocabulary is unchanged")
