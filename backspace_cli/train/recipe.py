"""The training recipe: which stages run, for how long, and how they learn; a JSON file can change any field."""
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from backspace_convert.errors import UserError

STAGES = ("sft", "own", "grpo")  # in the order they run
# Fields that count what a stage needs at least one of (--stages leaves a stage out); other numbers may be 0.
AT_LEAST = {name: 1 for name in ("batch", "grpo_prompts", "grpo_group", "save_every", "probe_every", "max_tokens",
                                "sft_steps", "own_steps", "grpo_steps")}


@dataclass
class TrainRecipe:
    seed: int = 0
    stages: tuple[str, ...] = STAGES
    # Tasks
    held_out_share: float = 0.1  # without --eval-tasks: the share of the task file held out, never trained on
    probe_tasks: int = 32  # held-out tasks answered greedily, with and without deletes, at each probe
    eval_tasks: int = 200  # held-out tasks in the final A/B (0: none)
    max_tokens: int = 48  # a reply's length in rollouts, probes and the final A/B
    # False trains the same stages with no delete: no wrong replies in the supervised stages, and GRPO's
    # rollouts with the delete banned. That is the fair baseline a delete recipe is measured against.
    deletes: bool = True
    # 0 trains every weight; N trains only the top N decoder layers, the final norm and the delete token's
    # output row: the backward pass stops at the lowest trained layer, which pays on a big model.
    train_layers: int = 0
    # Supervised stages: engine states packed as trees
    batch: int = 16  # questions per step, each one tree
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1  # of a stage's steps, then cosine decay
    wrong_per_question: int = 2  # the model's likeliest wrong tokens, over all the answer's states, made into wrong replies
    delete_weight: float = 1.0  # a wrong state's weight in the loss, against 1 for a live one
    # Look before deleting: a wrong reply goes on up to this many tokens past where it left every answer,
    # its states there learning this share of going on (the rest: the delete), before the delete alone.
    look_ahead: int = 8
    go_on_share: float = 0.7
    sft_steps: int = 200
    sft_lr: float = 3e-4
    own_steps: int = 100
    own_lr: float = 1e-4
    own_tasks: int = 256  # questions the model answers to find its own mistakes
    own_temperature: float = 1.0  # they are answered greedily and at this temperature
    # GRPO: groups of true-rollback rollouts per question
    grpo_steps: int = 20
    grpo_lr: float = 1e-5
    grpo_prompts: int = 4  # questions per step
    grpo_group: int = 8  # rollouts per question
    grpo_temperature: float = 1.0
    delete_cost: float = 0.02  # the reward is the task's score less this per delete
    kl: float = 0.05  # weight of the KL term to the model as the stage began
    # Checkpoints and progress
    save_every: int = 50  # steps between checkpoints: a killed run loses at most this many
    probe_every: int = 50  # steps between held-out probes
    # The sampling written into the GGUF as the model's recommendation: greedy, where a deleted token is
    # banned at its position, so the retry takes the next likeliest.
    sampling: dict = field(default_factory=lambda: {"temp": 0.0})
    # What chat's banner and the server's page say about the model, written into the GGUF: a sentence or
    # two, and questions it answers well.
    description: str = ""
    examples: list = field(default_factory=list)

    def steps(self, stage: str) -> int:
        return getattr(self, f"{stage}_steps")

    def lr(self, stage: str) -> float:
        return getattr(self, f"{stage}_lr")

    def to_json(self) -> dict:
        data = asdict(self)
        data["stages"] = list(self.stages)
        return data


def read_json_object(path: Path, option: str, holding: str) -> dict:
    """A JSON file that holds one object, such as a recipe's fields or a model's settings."""
    try:
        settings = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{option} {path}: {error}") from None
    if not isinstance(settings, dict):
        raise UserError(f"{option} {path}: expected a JSON object of {holding}")
    return settings


def read_recipe(path: Path | None, overrides: dict) -> TrainRecipe:
    """The defaults, then a recipe file's fields, then the command line's."""
    settings = read_json_object(path, "--recipe", "recipe fields") if path is not None else {}
    settings.update({name: value for name, value in overrides.items() if value is not None})
    known = {f.name: f for f in fields(TrainRecipe)}
    recipe = TrainRecipe()
    for name, value in settings.items():
        if name not in known:
            raise UserError(f"unknown recipe field {name!r}")
        default = getattr(recipe, name)
        if isinstance(default, tuple):
            value = tuple(value)
            unknown = [stage for stage in value if stage not in STAGES]
            if unknown or not value:
                raise UserError(f"stages: expected some of {', '.join(STAGES)}, got {', '.join(map(str, value))}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise UserError(f"recipe field {name}: expected true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or isinstance(default, int) and not isinstance(value, int):
                raise UserError(f"recipe field {name}: expected {type(default).__name__}, got {value!r}")
            if value < AT_LEAST.get(name, 0):
                raise UserError(f"recipe field {name}: expected at least {AT_LEAST.get(name, 0)}, got {value!r}")
            value = float(value) if isinstance(default, float) else value
        elif not isinstance(value, type(default)):
            raise UserError(f"recipe field {name}: expected {type(default).__name__}, got {value!r}")
        setattr(recipe, name, value)
    if not all(isinstance(example, str) and example and "\n" not in example for example in recipe.examples):
        raise UserError("recipe field examples: expected a list of questions, each one line of text")
    if not 0 <= recipe.go_on_share < 1:
        raise UserError(f"recipe field go_on_share: expected a share below 1, got {recipe.go_on_share}")
    if recipe.train_layers and recipe.weight_decay:
        # Decoupled weight decay would shrink the whole output head, whose other rows do not train.
        raise UserError("recipe fields train_layers and weight_decay: give one of them")
    if not 0 <= recipe.held_out_share < 1:
        raise UserError(f"recipe field held_out_share: expected a share below 1, got {recipe.held_out_share}")
    return recipe
