"""The settings of a generation session: what the shared command-line options resolve to."""
from dataclasses import dataclass, field

from . import defaults


@dataclass
class Settings:
    model: str | None = None  # a GGUF path; None means BACKSPACE_MODEL, then the built-in model
    max_tokens: int = defaults.MAX_TOKENS
    # Sampling; None takes the model's recommendation, else the default (session.unset_sampling).
    temp: float | None = None  # 0 is greedy
    top_k: int | None = None  # 0 is off
    top_p: float | None = None  # 1.0 is off
    min_p: float | None = None  # 0.0 is off
    repeat_penalty: float | None = None  # 1.0 is off
    seed: int | None = None  # None draws a fresh seed per run
    ctx_size: int = defaults.CONTEXT_SIZE
    threads: int | None = None  # None: defaults.threads()
    gpu_layers: int | None = None  # None: all layers where llama.cpp can offload, else 0
    delete_token: str | None = None  # TEXT or ID; None: metadata, then the known names
    no_delete: bool = False  # ban the delete token: the A/B baseline
    max_deletes: int = defaults.MAX_DELETES
    logit_bias: list[tuple[str, float]] = field(default_factory=list)  # (TOKEN, BIAS), TOKEN an id or text
    verbose: bool = False  # let llama.cpp's own log lines through

    # The settings that chat's `/set KEY VALUE` may change, with their types.
    TUNABLE = {
        "temp": float, "top_k": int, "top_p": float, "min_p": float,
        "max_tokens": int, "seed": int, "max_deletes": int, "repeat_penalty": float,
    }
