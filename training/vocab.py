"""The tiny model's vocabulary: control tokens, byte fallback, one token per printable character, and
one token for each number from 10 to 29."""
import gguf

DELETE = "<|delete|>"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
ROLES = ("system", "user", "assistant")
# Control tokens first, so that their ids never move when the character set grows.
CONTROL = (UNK, BOS, EOS, DELETE) + tuple(f"<|{role}|>" for role in ROLES)
# "▁" is SentencePiece's space. Every other printable ASCII character is a token of its own; anything
# else (newlines, accents, emoji) falls back to its UTF-8 bytes, so every text round-trips exactly.
CHARACTERS = ("▁",) + tuple(chr(code) for code in range(0x21, 0x7F))
# Two-digit numbers, after the characters so that no earlier id moves: the task's numbers are one token
# each, so a written number is whole. SentencePiece, with every score equal, merges the leftmost pair of
# digits that is a token first, so a run of digits reads left to right ("1421" is 14 21, "123" is 12 3).
NUMBERS = tuple(str(n) for n in range(10, 30))

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
    table += [(text, T.NORMAL) for text in CHARACTERS + NUMBERS]
    return table


def pieces(text: str) -> list[str]:
    """Printable ASCII text as llama.cpp splits it into our tokens' texts (spaces as themselves)."""
    out, i = [], 0
    while i < len(text):
        step = 2 if text[i : i + 2] in NUMBERS else 1
        out.append(text[i : i + step])
        i += step
    return out


def token_id(text: str) -> int:
    return [token for token, _ in tokens()].index(text)


N_VOCAB = len(tokens())
