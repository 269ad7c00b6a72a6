"""The tiny model's vocabulary: control tokens, byte fallback, and one token per printable character."""
import gguf

DELETE = "<|delete|>"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
ROLES = ("system", "user", "assistant")
# Control tokens first, so that their ids never move when the character set grows.
CONTROL = (UNK, BOS, EOS, DELETE) + tuple(f"<|{role}|>" for role in ROLES)
# "▁" is SentencePiece's space. Every other printable ASCII character is a token of its own; anything
# else (newlines, accents, emoji) falls back to its UTF-8 bytes, so every text round-trips exactly.
CHARACTERS = ("▁",) + tuple(chr(code) for code in range(0x21, 0x7F))

# Roles are control tokens, so "<|user|>" can never be typed by accident. The template writes BOS
# itself, as most templates do, so callers tokenize its output without adding one.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tokens() -> list[tuple[str, gguf.TokenType]]:
    """Every token's text and type, in id order."""
    T = gguf.TokenType
    table = [(text, T.UNKNOWN if text == UNK else T.CONTROL) for text in CONTROL]
    table += [(f"<0x{byte:02X}>", T.BYTE) for byte in range(256)]
    table += [(text, T.NORMAL) for text in CHARACTERS]
    return table


def token_id(text: str) -> int:
    return [token for token, _ in tokens()].index(text)


N_VOCAB = len(tokens())
