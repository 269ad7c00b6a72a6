"""A model opened for generation: its engine, its delete token, and the sampler built from settings."""
import copy
from collections import Counter
from collections.abc import Generator
from dataclasses import replace

from backspace_convert.keys import DeleteToken, find_delete_token
from gguf.constants import Keys

from .. import defaults
from ..default_model import model_or_builtin
from .engine import DeleteRules, Engine
from backspace_convert.errors import UserError
from .events import Event
from .model import Model, load_model
from .sampling import make_logits_processors, make_sampler
from .stopping import Stop
from ..settings import BOUNDS, Settings


def delete_token_for(model: Model, spec: str | None) -> DeleteToken | None:
    """--delete-token first, else what the file says (backspace_convert's one lookup, asked of llama.cpp)."""
    if spec is None:
        return find_delete_token(model.metadata.get, model.n_vocab, model.token_text, model.find_token)
    token = model.parse_token(spec)
    if token is None:
        raise UserError(f"unknown delete token {spec!r}: it is neither a token id nor one token's text")
    return DeleteToken(token, model.token_text(token), "option")


def token_biases(model: Model, biases: list[tuple[str, float]], source: str,
                 base: dict[int, float] | None = None) -> dict[int, float]:
    """Each (TOKEN, BIAS), TOKEN an id or one token's text, summed by token id onto `base`; `source` names
    where the biases came from in the error about a TOKEN that is neither."""
    resolved = Counter(base or {})
    for spec, bias in biases:
        token = model.parse_token(str(spec))
        if token is None:
            raise UserError(f"{source}: {spec!r} is neither a token id nor one token's text")
        resolved[token] += bias
    return dict(resolved)


# The GGUF key by which a model recommends each sampling setting (llama.cpp's own tools honour them too),
# and the default where it has none; the exporter of the built-in model writes the same keys.
RECOMMENDED_SAMPLING = {
    "temp": (Keys.General.SAMPLING_TEMP, defaults.TEMPERATURE),
    "top_k": (Keys.General.SAMPLING_TOP_K, defaults.TOP_K),
    "top_p": (Keys.General.SAMPLING_TOP_P, defaults.TOP_P),
    "min_p": (Keys.General.SAMPLING_MIN_P, defaults.MIN_P),
    "repeat_penalty": (Keys.General.SAMPLING_PENALTY_REPEAT, defaults.REPEAT_PENALTY),
}


def unset_sampling(model: Model, settings: Settings) -> dict:
    """Values for the sampling settings that `settings` leaves None: the model's recommendation where its
    metadata has one, else backspace's default."""
    values = {}
    for name, (key, default) in RECOMMENDED_SAMPLING.items():
        if getattr(settings, name) is not None:
            continue
        recorded = model.metadata.get(key)
        if recorded is None:
            values[name] = default
            continue
        try:
            number = float(recorded)
        except ValueError:
            raise UserError(f"{model.path.name}: its {key} is {recorded!r}, not a number") from None
        try:
            values[name] = Settings.parse(name, BOUNDS[name].kind(number))
        except ValueError as error:
            raise UserError(f"{model.path.name}: its {key}: {error}") from None
    return values


def delete_rules(delete: DeleteToken | None, *, enabled: bool, greedy: bool, max_deletes: int) -> DeleteRules:
    """The engine's rules for this delete token (or marker); greedy decoding bans what it deletes."""
    return DeleteRules(
        token_id=delete.id if delete else None,
        marker=delete.text if delete and delete.source == "marker" else None,
        enabled=enabled,
        max_deletes=max_deletes,
        ban_deleted=greedy,
    )


class Session:
    """What every command that opens a model builds on (complete, chat, eval, serve and synth): one loaded
    model and the settings to sample it with."""

    def __init__(self, settings: Settings) -> None:
        self.model = load_model(
            model_or_builtin(settings.model),  # -m, or BACKSPACE_MODEL, which click reads into it
            n_ctx=settings.ctx_size,
            n_threads=settings.threads,
            n_gpu_layers=settings.gpu_layers,
            verbose=settings.verbose,
            rpc_servers=settings.rpc,
            rpc_timeout=settings.rpc_timeout,
        )
        self.settings = replace(settings, **unset_sampling(self.model, settings))
        self.engine = Engine(self.model)
        self.delete_token = delete_token_for(self.model, settings.delete_token)
        self.logit_bias = token_biases(self.model, settings.logit_bias, "--logit-bias")

    def for_reply(self, settings: Settings, logit_bias: dict[int, float]) -> "Session":
        """A copy over the same model and engine, with one reply's own settings and biases; the original keeps
        its own (a server's requests each carry theirs)."""
        reply = copy.copy(self)
        reply.settings, reply.logit_bias = settings, logit_bias
        return reply

    @property
    def rules(self) -> DeleteRules:
        return delete_rules(self.delete_token, enabled=not self.settings.no_delete,
                            greedy=self.settings.temp == 0, max_deletes=self.settings.max_deletes)

    @property
    def rewind_window(self) -> int:
        """How many of a reply's newest tokens can still be deleted, so that renderers hold their text
        back: none when nothing can delete."""
        rules = self.rules
        return rules.window if rules.can_delete else 0

    def reply_options(self) -> dict:
        """What the engine takes for one reply under the settings: a sampler of its own (seeded), the logits
        processors, max_tokens and the delete rules."""
        settings = self.settings
        return dict(
            sampler=make_sampler(settings.temp, settings.top_k, settings.top_p, settings.min_p, settings.seed),
            logits_processors=make_logits_processors(
                settings.repeat_penalty, defaults.REPEAT_LAST_N, self.logit_bias
            ),
            max_tokens=settings.max_tokens,
            rules=self.rules,
        )

    def generate(self, prompt: list[int], stop: Stop | None = None) -> Generator[Event, None, None]:
        return self.engine.generate(prompt, stop=stop, **self.reply_options())
