"""An HF tokenizer (a tokenizer.json, or a save_pretrained folder) seen by synth as it sees a GGUF's: before
a fine-tune there is no GGUF yet. Needs the `tokenizers` library (the [hf] extra)."""
import json
from functools import lru_cache
from pathlib import Path

from backspace_convert.errors import UserError, missing_extra

# Ends of a turn besides the EOS token, as llama.cpp's vocabulary loader also counts them (llama-vocab.cpp).
END_OF_TURN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>")


def is_hf_tokenizer(path: str) -> bool:
    """A tokenizer.json, or a folder that holds one; anything else is taken for a GGUF."""
    candidate = Path(path)
    return candidate.name == "tokenizer.json" or (candidate.is_dir() and (candidate / "tokenizer.json").is_file())


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte is written as one printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, characters)}


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The byte-level alphabet back to bytes."""
    return {character: byte for byte, character in byte_level_alphabet().items()}


class HFTokenizer:
    """The part of engine.model.Model that synth uses: tokenize, pieces, specials and the chat template."""

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise missing_extra("an HF tokenizer needs the tokenizers library", "hf") from None
        self.path = Path(path)
        folder = self.path if self.path.is_dir() else self.path.parent
        file = folder / "tokenizer.json" if self.path.is_dir() else self.path
        try:
            self._tokenizer = Tokenizer.from_file(str(file))
        except Exception as error:  # tokenizers raises a bare Exception for a file it cannot read
            raise UserError(f"cannot read the tokenizer {file}: {error}") from None
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        template = _chat_template(folder, config)
        self.metadata = {"tokenizer.chat_template": template} if template else {}
        self.n_vocab = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._special = {token.content for token in self._tokenizer.get_added_tokens_decoder().values() if token.special}
        decoder = json.loads(self._tokenizer.to_str()).get("decoder") or {}
        self._byte_level = decoder.get("type") == "ByteLevel"  # else SentencePiece-style: "▁" and <0xNN>
        self.llama = _SpecialIds(self._id(config.get("bos_token")), self._id(config.get("eos_token")))
        ends = [self.find_token(text) for text in END_OF_TURN_TEXTS]
        self._ends = {token for token in ends + [self.llama.token_eos()] if token is not None and token >= 0}

    def _id(self, token) -> int:
        text = token.get("content") if isinstance(token, dict) else token
        found = self.find_token(text) if isinstance(text, str) else None
        return -1 if found is None else found

    def tokenize(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
        self._tokenizer.encode_special_tokens = not special  # True: special tokens' texts are plain text
        return self._tokenizer.encode(text, add_special_tokens=add_bos).ids

    def piece(self, token: int) -> bytes:
        """The bytes the token writes; a special token writes none, as in llama.cpp."""
        text = self._tokenizer.id_to_token(token)
        if text is None or text in self._special:
            return b""
        if self._byte_level:
            decoder = _byte_decoder()
            return bytes(decoder[c] for c in text) if all(c in decoder for c in text) else text.encode("utf-8")
        if text.startswith("<0x") and text.endswith(">") and len(text) == 6:
            return bytes([int(text[3:5], 16)])
        return text.replace("\u2581", " ").encode("utf-8")

    def token_text(self, token: int) -> str:
        return self._tokenizer.id_to_token(token) or ""

    def is_normal(self, token: int) -> bool:
        return self._tokenizer.id_to_token(token) not in self._special

    def is_end_of_generation(self, token: int) -> bool:
        return token in self._ends

    def find_token(self, text: str) -> int | None:
        return self._tokenizer.token_to_id(text)


def _chat_template(folder: Path, config: dict) -> str | None:
    """The template that convert_hf_to_gguf.py will write into the GGUF, found where gguf-py looks: in
    tokenizer_config.json, else in chat_template.jinja (where transformers 5's save_pretrained puts it),
    else in chat_template.json. A list of named templates gives its default."""
    template = config.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    elif template is None and (folder / "chat_template.json").is_file():
        template = json.loads((folder / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    if isinstance(template, list):
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None


class _SpecialIds:
    """BOS and EOS ids, asked for as the chat template asks llama-cpp-python's Llama."""

    def __init__(self, bos: int, eos: int) -> None:
        self._bos, self._eos = bos, eos

    def token_bos(self) -> int:
        return self._bos

    def token_eos(self) -> int:
        return self._eos
