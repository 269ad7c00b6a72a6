"""What a person sees while a stage trains: the Trainer's bar, a line per probe, Ctrl-C that saves, and a summary table."""
import signal
from dataclasses import dataclass, field

from transformers import TrainerCallback

from ..engine.delete_rules import DeleteRules
from .model_setup import ModelBundle
from .rollout import roll_out
from .tasks import Scorer, TrainTask


@dataclass
class ProbeResult:
    stage: str
    step: int
    with_deletes: float  # held-out accuracy, greedy, deletes on
    without: float  # the same with the delete token banned
    deletes: float  # deletes per reply, deletes on


def probe(bundle: ModelBundle, tasks: list[TrainTask], scorer: Scorer, max_tokens: int, stage: str,
          step: int) -> ProbeResult:
    """Greedy replies to held-out tasks, as the engine decodes them: deletes on (a deleted token banned
    at its position), then off."""
    results = {}
    for enabled in (True, False):
        rules = DeleteRules(token_id=bundle.delete_id, enabled=enabled, ban_deleted=True)
        right = deletes = 0.0
        for task in tasks:
            run = roll_out(bundle.model, bundle.prompt_ids(task), rules, bundle.end_ids,
                           max_tokens=max_tokens, temperature=0.0)
            right += scorer(bundle.text(run.tokens), task)
            deletes += run.deletes
        results[enabled] = (right / len(tasks), deletes / len(tasks))
    return ProbeResult(stage, step, results[True][0], results[False][0], results[True][1])


@dataclass
class StageProgress(TrainerCallback):
    """A stage's bar: the step, the loss (GRPO: the reward), deletes per reply, and the last held-out probe,
    which runs every `every` steps and at the end, each with a line of its own. In place of the Trainer's
    bar, which prints every log as a dict."""

    stage: str
    bundle: ModelBundle
    tasks: list[TrainTask]
    scorer: Scorer
    max_tokens: int
    every: int
    history: list[ProbeResult] = field(default_factory=list)
    logs: list[dict] = field(default_factory=list)
    _bar: object = None
    _shown: dict = field(default_factory=dict)

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self._bar = tqdm(total=state.max_steps, initial=state.global_step, desc=self.stage, dynamic_ncols=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        self.logs.append({"stage": self.stage, "step": state.global_step, **logs})
        for name in ("loss", "reward", "deletes"):
            if name in logs:
                self._shown[name] = f"{float(logs[name]):.3g}"
        self._show()

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)
        if not self.tasks or not state.is_world_process_zero:
            return
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            result = probe(self.bundle, self.tasks, self.scorer, self.max_tokens, self.stage, state.global_step)
            self.history.append(result)
            self._shown["held-out"] = f"{result.with_deletes:.0%}/{result.without:.0%}"
            self._bar.write(f"{self.stage} step {result.step}/{state.max_steps}: held-out greedy "
                            f"{result.with_deletes:.1%} with deletes ({result.deletes:.2f} a reply), "
                            f"{result.without:.1%} without")
            self._show()

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(self._shown, refresh=True)


class SaveOnInterrupt(TrainerCallback):
    """The first Ctrl-C (or SIGTERM) asks for a checkpoint at the end of the step, then a stop; a second
    Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupted:
            control.should_save = True
            control.should_training_stop = True
