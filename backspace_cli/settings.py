"""The settings of a generation session, and the one table of the values each accepts: the command-line
options, chat's /set and the server all check against it."""
from dataclasses import dataclass, field
from numbers import Integral, Real

from backspace_convert.errors import UserError

from . import defaults

_KIND_NAMES = {int: "an integer", float: "a float"}


@dataclass(frozen=True)
class Bounds:
    """What a number setting accepts: its type, and a range open where a bound is None."""

    kind: type  # int or float
    low: float | None = None
    high: float | None = None
    above: bool = False  # low itself is refused

    def accepts(self, value: int | float) -> bool:
        # Written so that every comparison with NaN fails: NaN is never in a range.
        low = self.low is None or value > self.low or (not self.above and value == self.low)
        return low and (self.high is None or value <= self.high)

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
                raise ValueError(f"{value!r} is not {_KIND_NAMES[self.kind]}") from None
        elif isinstance(value, bool) or not isinstance(value, Integral if self.kind is int else Real):
            raise ValueError(f"{value!r} is not {_KIND_NAMES[self.kind]}")
        if not self.accepts(number):
            raise ValueError(f"{value} is not {self.describe()}")
        return number


# Every number setting's bounds: click's options, chat's /set and serve's request fields all check by these.
BOUNDS = {
    "max_tokens": Bounds(int, 1),
    "temp": Bounds(float, 0),
    "top_k": Bounds(int, 0),
    "top_p": Bounds(float, 0, 1),
    "min_p": Bounds(float, 0, 1),
    "repeat_penalty": Bounds(float, 0, above=True),
    "seed": Bounds(int),
    "ctx_size": Bounds(int, 16),
    "threads": Bounds(int, 1),
    "gpu_layers": Bounds(int),
    "max_deletes": Bounds(int, 0),
    "rpc_timeout": Bounds(float, 0),
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
        for name in BOUNDS:
            value = getattr(self, name)
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
