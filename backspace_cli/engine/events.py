"""The events that generation yields and renderers consume: plain data, no llama.cpp."""
from dataclasses import dataclass

# Why a reply ended.
STOP = "stop"  # the model emitted an end-of-generation token
LENGTH = "length"  # max_tokens reached
CONTEXT = "context"  # the context window is full
INTERRUPTED = "interrupted"  # Ctrl-C
DELETE_BUDGET = "delete_budget"  # max_deletes reached


@dataclass(frozen=True, slots=True)
class Token:
    """A token was appended; `text` is the complete characters it added (may be "")."""

    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Delete:
    """The last token was removed; `text` is exactly what its Token event had added."""

    id: int
    text: str


@dataclass(frozen=True, slots=True)
class Counts:
    prompt_tokens: int  # tokens in the prompt
    evaluated_prompt_tokens: int  # of those, how many were decoded (the rest came from the cache)
    tokens: int  # tokens in the final text
    generated: int  # tokens appended, deleted ones included (the decode steps of the reply)
    deletes: int
    refused_deletes: int  # delete tokens sampled with nothing deletable, banned instead


@dataclass(frozen=True, slots=True)
class Timings:
    prompt_s: float  # time to decode the prompt
    generation_s: float  # time from the first sampled token to the end
    first_token_s: float  # time from the start to the first sampled token


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str
    text: str  # the final text: replaying every Token and Delete gives exactly this
    counts: Counts
    timings: Timings
    n_ctx: int  # the context size, for "context used"
    context_used: int  # tokens in the cache at the end

    @property
    def prompt_tps(self) -> float:
        return _rate(self.counts.evaluated_prompt_tokens, self.timings.prompt_s)

    @property
    def gen_tps(self) -> float:
        return _rate(self.counts.generated, self.timings.generation_s)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


Event = Token | Delete | Done
