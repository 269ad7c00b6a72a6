"""The command-line options that commands share: -h beside --help, and the engine's options as click decorators."""
import click

from .. import defaults
from ..settings import BOUNDS, Bounds, Settings, parse_rpc

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}  # every command answers -h as --help


class _Checked(click.ParamType):
    """Checks by the setting's Bounds, the rule that /set and serve share, in place of click's own check."""

    bounds: Bounds

    def convert(self, value, param, ctx):
        try:
            return self.bounds.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


# Subclasses of click's range types, so that --help shows each range as click writes it.
class _IntRange(_Checked, click.IntRange):
    pass


class _FloatRange(_Checked, click.FloatRange):
    pass


class _Int(_Checked, click.types.IntParamType):
    pass


def setting_type(name: str) -> click.ParamType:
    """The click type of Settings' number field `name`."""
    bounds = BOUNDS[name]
    if bounds.low is None and bounds.high is None:
        checked = _Int()
    else:
        checked = (_IntRange if bounds.kind is int else _FloatRange)(bounds.low, bounds.high, min_open=bounds.above)
    checked.bounds = bounds
    return checked


def _parse_bias(context, parameter, values):
    parsed = []
    for value in values:
        token, _, bias = value.rpartition("=")  # rpartition: a token's text may itself hold "="
        try:
            amount = float(bias)
        except ValueError:
            amount = None
        if not token or amount is None:
            raise click.BadParameter(f"{value!r} is not TOKEN=BIAS (for example 1234=-5 or '<|delete|>=2.5')")
        parsed.append((token, amount))
    return parsed


def _parse_rpc(context, parameter, value):
    try:
        return parse_rpc(value) if value else ()
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


MODEL_OR = "the model's recommendation, else"  # sampling left unset takes GGUF's general.sampling.*

# By the Settings field each sets; `complete`, `chat` and `serve` take them all.
OPTIONS = {
    "model": click.option("-m", "--model", envvar="BACKSPACE_MODEL",
                          help="GGUF model file [env: BACKSPACE_MODEL; default: the built-in model]."),
    "max_tokens": click.option("-n", "--max-tokens", type=setting_type("max_tokens"), default=defaults.MAX_TOKENS,
                               show_default=True, help="Most tokens in a reply."),
    "temp": click.option("--temp", type=setting_type("temp"), default=None,
                         help=f"Sampling temperature; 0 is greedy [default: {MODEL_OR} {defaults.TEMPERATURE}]."),
    "top_k": click.option("--top-k", type=setting_type("top_k"), default=None,
                          help=f"0 is off [default: {MODEL_OR} {defaults.TOP_K}]."),
    "top_p": click.option("--top-p", type=setting_type("top_p"), default=None,
                          help=f"1 is off [default: {MODEL_OR} {defaults.TOP_P}]."),
    "min_p": click.option("--min-p", type=setting_type("min_p"), default=None,
                          help=f"0 is off [default: {MODEL_OR} {defaults.MIN_P}]."),
    "repeat_penalty": click.option("--repeat-penalty", type=setting_type("repeat_penalty"), default=None,
                                   help=f"1 is off [default: {MODEL_OR} {defaults.REPEAT_PENALTY}]."),
    "seed": click.option("--seed", type=setting_type("seed"), default=None,
                         help="Random seed (default: a fresh one each run)."),
    "ctx_size": click.option("-c", "--ctx-size", type=setting_type("ctx_size"), default=defaults.CONTEXT_SIZE,
                             show_default=True, help="Context size in tokens."),
    "threads": click.option("-t", "--threads", type=setting_type("threads"), default=None,
                            help="CPU threads (default: physical cores)."),
    "gpu_layers": click.option("-ngl", "--gpu-layers", type=setting_type("gpu_layers"), default=None,
                               help="Layers to offload to the GPU or --rpc servers (default: all when there is one,"
                                    " else 0)."),
    "delete_token": click.option("--delete-token", help="The delete token, as TEXT or ID (default: from the model)."),
    "no_delete": click.option("--no-delete", is_flag=True,
                              help="Ban the delete token: plain generation, the A/B baseline."),
    "max_deletes": click.option("--max-deletes", type=setting_type("max_deletes"), default=defaults.MAX_DELETES,
                                show_default=True, help="Deletes per reply; one more ends the reply."),
    "logit_bias": click.option("--logit-bias", multiple=True, callback=_parse_bias, metavar="TOKEN=BIAS",
                               help="Add BIAS to TOKEN's logit (an id or a token's text); repeatable."),
    "verbose": click.option("-v", "--verbose", is_flag=True, help="Show llama.cpp's own log lines."),
    # llama.cpp's RPC backend, as llama-cli's --rpc.
    "rpc": click.option("--rpc", callback=_parse_rpc, envvar="BACKSPACE_RPC", metavar="HOST:PORT[,...]",
                        help="Offload layers to these rpc-servers (llama.cpp's RPC backend; all layers unless -ngl"
                             " says) [env: BACKSPACE_RPC]."),
    "rpc_timeout": click.option("--rpc-timeout", type=setting_type("rpc_timeout"),
                                default=defaults.RPC_TIMEOUT_SECONDS, show_default=True, metavar="SECONDS",
                                help="While the model loads or a reply runs, an rpc-server silent this long is taken"
                                     " as gone; 0 waits forever."),
}
# `eval` runs every task with deletes and without, task i with seed SEED + i: it declares those two itself.
EVAL_OWN = ("seed", "no_delete")


def _stacked(options: list):
    """One decorator that applies `options` in order, as if each were written above the command."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


engine_options = _stacked(list(OPTIONS.values()))
eval_engine_options = _stacked([option for name, option in OPTIONS.items() if name not in EVAL_OWN])


def settings_from(options: dict) -> Settings:
    """Pop the shared options out of a command's keyword arguments."""
    names = [name for name in Settings.__dataclass_fields__]
    values = {name: options.pop(name) for name in names if name in options}
    values["logit_bias"] = list(values.get("logit_bias") or [])
    return Settings(**values)
