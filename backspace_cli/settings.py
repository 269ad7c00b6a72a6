"""The settings of a generation session, and the one table of the values each accepts: the command-line
options, chat's /set and the server all check against it."""
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

from backspace_convert.errors import UserError

from . import defaults

_KIND_NAMES = {int: "an integer", float: "a float"}
INT_LIMIT = 2**31 - 1  # llama.cpp takes integer settings as C ints
# Sampling computes in float32: a penalty or temperature past these sizes overflows a logit or divides by 0.
FLOAT_LIMIT = 1e30


@dataclass(frozen=True)
class Bounds:
    """What a number setting accepts: its type, and a range open where a bound is None. Inside the range,
    a number must still fit what llama.cpp and the sampler compute with."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    above: bool = False  # low itself is refused
    any_size: bool = False  # an integer of any size means something (a seed: its low 32 bits)

    def accepts(self, value: int | float) -> bool:
        # Written so that every comparison with NaN fails: NaN is never in a range.
        low = self.low is None or value > self.low or (not self.above and value == self.low)
        return low and (self.high is None or value <= self.high)

    def fits(self, value: int | float) -> bool:
        if self.kind is int:
            return self.any_size or abs(value) <= INT_LIMIT
        return value == 0 or 1 / FLOAT_LIMIT <= abs(value) <= FLOAT_LIMIT

    def describe(self) -> str:
        if self.high is not None:
            return f"between {self.low} and {self.high}"
        return f"above {self.low}" if self.above else f"at least {self.low}"

    def parse(self, value: str | int | float) -> int | float:
        """`value`, or the number that its text spells, if the setting accepts it; else ValueError, in a line."""
        number = value
        if isinstance(value, str):
            try:
                number = self.kind(value)
            except ValueError:
                raise ValueError(f"{_shown(value)!r} is not {_KIND_NAMES[self.kind]}") from None
        elif isinstance(value, bool) or not isinstance(value, Integral if self.kind is int else Real):
            raise ValueError(f"{_shown(value)} is not {_KIND_NAMES[self.kind]}")
        if self.kind is float:
            number = _float(number)
        if not self.accepts(number):
            raise ValueError(f"{_shown(value)} is not {self.describe()}")
        if not self.fits(number):
            raise ValueError(f"{_shown(value)} is too {'large' if abs(number) > 1 else 'small'} to compute with")
        return number


def _float(value: int | float) -> float:
    """An integer too long for a float is as large as infinity, for the checks above."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _shown(value) -> str:
    """A value as an error message quotes it: a number may be hundreds of digits long."""
    text = str(value)
    return text if len(text) <= 24 else text[:20] + "..."


# Every number setting's bounds: click's options, chat's /set and serve's request fields all check by these.
BOUNDS = {
    "max_tokens": Bounds(int, 1),
    "temp": Bounds(float, 0),
    "top_k": Bounds(int, 0),
    "top_p": Bounds(float, 0, 1),
    "min_p": Bounds(float, 0, 1),
    "repeat_penalty": Bounds(float, 0, above=True),
    "seed": Bounds(int, any_size=True),
    "ctx_size": Bounds(int, 16),
    "threads": Bounds(int, 1),
    "gpu_layers": Bounds(int),
    "max_deletes": Bounds(int, 0),
    "rpc_timeout": Bounds(float, 0),
    "logit_bias": Bounds(float, -100, 100),  # each bias: OpenAI's range, where -100 bans a token
}


def check_endpoint(endpoint: str) -> str:
    """An rpc-server's HOST:PORT as llama.cpp's RPC backend reads it (split at the first colon, IPv4);
    else ValueError, in a line."""
    host, colon, port = endpoint.partition(":")
    if not host or not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{endpoint!r} is not HOST:PORT (for example 192.168.1.10:50052)")
    return endpoint


def parse_rpc(text: str) -> tuple[str, ...]:
    """--rpc's value, HOST:PORT[,HOST:PORT...], as llama-cli's --rpc takes it."""
    return tuple(check_endpoint(endpoint.strip()) for endpoint in text.split(","))


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
    rpc: tuple[str, ...] = ()  # HOST:PORT of each rpc-server that layers are offloaded to (--rpc)
    rpc_timeout: float = defaults.RPC_TIMEOUT_SECONDS  # a server silent this long is gone; 0 waits forever

    # The settings that chat's `/set KEY VALUE` may change, with their types.
    TUNABLE = {name: BOUNDS[name].kind for name in (
        "temp", "top_k", "top_p", "min_p", "max_tokens", "seed", "max_deletes", "repeat_penalty",
    )}

    def __post_init__(self) -> None:
        values = [(name, getattr(self, name)) for name in BOUNDS if name != "logit_bias"]
        values += [("logit_bias", bias) for _, bias in self.logit_bias]
        for name, value in values:
            if value is not None:
                try:
                    self.parse(name, value)
                except ValueError as error:
                    raise UserError(f"{name}: {error}") from None
        for endpoint in self.rpc:
            try:
                check_endpoint(endpoint)
            except ValueError as error:
                raise UserError(f"rpc: {error}") from None

    @staticmethod
    def parse(name: str, value: str | int | float) -> int | float:
        """A value for the number setting `name`, from its text or as it is, if BOUNDS accepts it; else
        ValueError, whose message says why in one line."""
        return BOUNDS[name].parse(value)
