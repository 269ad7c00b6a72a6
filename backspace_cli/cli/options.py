"""The command-line options that `complete` and `chat` share, as one click decorator."""
import click

from .. import defaults
from ..settings import Settings


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


MODEL_OR = "the model's recommendation, else"
# Shared with `eval`. Unset, each takes the model's recommended value (GGUF's general.sampling.*).
SAMPLING_OPTIONS = [
    click.option("--temp", type=click.FloatRange(min=0), default=None,
                 help=f"Sampling temperature; 0 is greedy [default: {MODEL_OR} {defaults.TEMPERATURE}]."),
    click.option("--top-k", type=click.IntRange(min=0), default=None,
                 help=f"0 is off [default: {MODEL_OR} {defaults.TOP_K}]."),
    click.option("--top-p", type=click.FloatRange(0, 1), default=None,
                 help=f"1 is off [default: {MODEL_OR} {defaults.TOP_P}]."),
    click.option("--min-p", type=click.FloatRange(0, 1), default=None,
                 help=f"0 is off [default: {MODEL_OR} {defaults.MIN_P}]."),
]

OPTIONS = [
    click.option("-m", "--model", envvar="BACKSPACE_MODEL", help="GGUF model file [env: BACKSPACE_MODEL]."),
    click.option("-n", "--max-tokens", type=click.IntRange(min=1), default=defaults.MAX_TOKENS, show_default=True,
                 help="Most tokens in a reply."),
    *SAMPLING_OPTIONS,
    click.option("--repeat-penalty", type=click.FloatRange(min=0, min_open=True), default=None,
                 help=f"1 is off [default: {MODEL_OR} {defaults.REPEAT_PENALTY}]."),
    click.option("--seed", type=int, default=None, help="Random seed (default: a fresh one each run)."),
    click.option("-c", "--ctx-size", type=click.IntRange(min=16), default=defaults.CONTEXT_SIZE, show_default=True,
                 help="Context size in tokens."),
    click.option("-t", "--threads", type=click.IntRange(min=1), default=None,
                 help="CPU threads (default: physical cores)."),
    click.option("-ngl", "--gpu-layers", type=int, default=None,
                 help="Layers to offload to the GPU (default: all when llama.cpp has a GPU backend, else 0)."),
    click.option("--delete-token", help="The delete token, as TEXT or ID (default: from the model)."),
    click.option("--no-delete", is_flag=True, help="Ban the delete token: plain generation, the A/B baseline."),
    click.option("--max-deletes", type=click.IntRange(min=0), default=defaults.MAX_DELETES, show_default=True,
                 help="Deletes per reply; one more ends the reply."),
    click.option("--logit-bias", multiple=True, callback=_parse_bias, metavar="TOKEN=BIAS",
                 help="Add BIAS to TOKEN's logit (an id or a token's text); repeatable."),
    click.option("-v", "--verbose", is_flag=True, help="Show llama.cpp's own log lines."),
]


def _stacked(options: list):
    """One decorator that applies `options` in order, as if each were written above the command."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


engine_options = _stacked(OPTIONS)
sampling_options = _stacked(SAMPLING_OPTIONS)


def settings_from(options: dict) -> Settings:
    """Pop the shared options out of a command's keyword arguments."""
    names = [name for name in Settings.__dataclass_fields__]
    values = {name: options.pop(name) for name in names if name in options}
    values["logit_bias"] = list(values.get("logit_bias") or [])
    return Settings(**values)
