"""The checks that make a GGUF file safe to hand to llama.cpp, made first with the lazy reader: what its loader
would abort on (GGML_ASSERT) or read out of bounds for, refused with one line that says what is wrong.

The converter and the engine both ask `validate`: a file that one of them refuses, the other refuses the same way."""
from pathlib import Path

import gguf

from .reader import ConvertError, GuardedReader, LazyArrayField, open_gguf

V = gguf.GGUFValueType
TOKENS = gguf.Keys.Tokenizer.LIST
TOKEN_TYPES = gguf.Keys.Tokenizer.TOKEN_TYPE
SCORES = gguf.Keys.Tokenizer.SCORES
MERGES = gguf.Keys.Tokenizer.MERGES
EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
# The item type llama.cpp reads each tokenizer array as: it asserts that texts are strings, and reads
# scores and types as raw C arrays, one item per token.
ARRAY_ITEMS = {TOKENS: V.STRING, SCORES: V.FLOAT32, TOKEN_TYPES: V.INT32, MERGES: V.STRING}
PER_TOKEN = (SCORES, TOKEN_TYPES)


def validate(path: str | Path, missing: str = "no such file") -> GuardedReader:
    """Open a GGUF file and check everything below, or raise ConvertError with one line naming the file."""
    path = Path(path)
    reader = open_gguf(path, missing)
    try:
        check_model(reader)
    except ConvertError as error:
        raise ConvertError(f"{error}: {path}") from None
    except UnicodeDecodeError:
        raise ConvertError(f"corrupt GGUF file (a metadata string is not UTF-8): {path}") from None
    return reader


def check_model(reader: gguf.GGUFReader) -> None:
    check_shapes(reader, len(token_texts(reader)))


def token_texts(reader: gguf.GGUFReader) -> list[bytes]:
    """The vocabulary as the bytes llama.cpp reads, once its arrays are checked: the types it reads them
    as, one score and one type per token, and no two tokens with the same text."""
    for key, item_type in ARRAY_ITEMS.items():
        field = reader.get_field(key)
        if field is not None and (field.types[0] != V.ARRAY or field.types[-1] != item_type):
            kinds = " of ".join(kind.name for kind in field.types)
            raise ConvertError(f"{key} must be an ARRAY of {item_type.name}, not {kinds}")
    field = reader.get_field(TOKENS)
    if field is None:
        raise ConvertError(f"the model has no tokenizer ({TOKENS} is missing)")
    texts = field.raw_strings() if isinstance(field, LazyArrayField) else []
    if not texts:
        raise ConvertError(f"the model's vocabulary is empty ({TOKENS} has no tokens)")
    for key in PER_TOKEN:
        other = reader.get_field(key)
        if other is not None and len(other.data) != len(texts):
            raise ConvertError(f"{key} has {len(other.data)} entries but the vocabulary has {len(texts)} tokens")
    _check_unique(texts)
    return texts


def _check_unique(texts: list[bytes]) -> None:
    # llama.cpp names an empty token [EMPTY_<id>], which may clash with a real one.
    named = [text or f"[EMPTY_{index}]".encode() for index, text in enumerate(texts)]
    if len(set(named)) == len(named):
        return
    first: dict[bytes, int] = {}
    for index, text in enumerate(named):
        if text in first:
            shown = text.decode("utf-8", errors="replace")
            raise ConvertError(f"tokens {first[text]} and {index} have the same text {shown!r}: each must be unique")
        first[text] = index


def check_shapes(reader: gguf.GGUFReader, n_vocab: int) -> None:
    """The embedding (and output) matrix has one row per token, and the architecture's vocab_size agrees."""
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    if EMBEDDING not in tensors:
        raise ConvertError(f"the model has no {EMBEDDING}")
    for name in (EMBEDDING, OUTPUT):
        tensor = tensors.get(name)
        if tensor is not None and (len(tensor.shape) != 2 or int(tensor.shape[1]) != n_vocab):
            dims = " x ".join(str(int(d)) for d in reversed(tensor.shape))
            raise ConvertError(f"the vocabulary has {n_vocab} tokens but {name} is {dims}: they must agree")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch is None or arch.types[0] != V.STRING:
        raise ConvertError(f"the model has no {gguf.Keys.General.ARCHITECTURE}")
    key = gguf.Keys.LLM.VOCAB_SIZE.format(arch=arch.contents())
    size = reader.get_field(key)
    if size is not None and size.contents() != n_vocab:
        raise ConvertError(f"{key} is {size.contents()} but the vocabulary has {n_vocab} tokens")
