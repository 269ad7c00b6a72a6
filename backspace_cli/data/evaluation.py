"""`backspace eval`'s run: every task under each setting, deletes enabled and the delete token banned, with the
same seeds, and each setting's replies summed up; a baseline model runs the banned settings alone."""
from collections.abc import Callable
from dataclasses import dataclass, replace

from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from ..engine.batch import BatchEngine, BatchRequest
from ..engine.events import INTERRUPTED, Done
from ..engine.prompt import prompt_tokens
from ..engine.session import Session
from ..settings import Settings
from .eval_results import ArmReport, Outcome
from .eval_stats import wilson
from .reply_deletes import ReplyDeletes
from .tasks import SCORINGS, Task, score


@dataclass(frozen=True)
class EvalArm:
    """One side of the A/B comparison: the session's settings with deletes on or off, sampled or greedy."""

    name: str
    deletes: bool  # False bans the delete token
    greedy: bool
    temp: float | None = None  # a sweep's temperature; None: the session's

    def settings(self, base: Settings, seed: int) -> Settings:
        temp = 0.0 if self.greedy else base.temp if self.temp is None else self.temp
        return replace(base, seed=seed, no_delete=not self.deletes, temp=temp)


def arms_for(temp: float, greedy: bool) -> list[EvalArm]:
    """Deletes on and off, sampled at `temp`, and greedily too if asked (or only, at temperature 0)."""
    sampled = temp > 0
    arms = []
    if sampled:
        arms += [EvalArm("deletes", True, False), EvalArm("no-delete", False, False)]
    if greedy or not sampled:
        arms += [EvalArm("greedy, deletes", True, True), EvalArm("greedy, no-delete", False, True)]
    return arms


def arms_for_temps(temps: list[float]) -> list[EvalArm]:
    """A sweep: deletes on and off at each temperature, 0 being greedy."""
    arms = []
    for temp in temps:
        if temp == 0:
            arms += [EvalArm("greedy, deletes", True, True), EvalArm("greedy, no-delete", False, True)]
        else:
            arms += [EvalArm(f"temp {temp:g}, deletes", True, False, temp),
                     EvalArm(f"temp {temp:g}, no-delete", False, False, temp)]
    return arms


class Evaluator:
    """Runs every task under every arm on one session, sharing its engine (and prompt cache)."""

    def __init__(self, session: Session, *, raw: bool = False, scoring: str = "exact", greedy: bool = False,
                 temps: list[float] | None = None, parallel: int = 1) -> None:
        """raw: the prompt as raw text, not through the chat template; scoring: "exact" (the reply, stripped,
        is the answer) or "contains" (the answer is in it); greedy: also run both arms greedily; temps: a
        sweep over these temperatures instead, both arms at each; parallel: replies stepped together in one
        batch (1: one at a time, on the session's engine and its prompt cache)."""
        if scoring not in SCORINGS:
            raise UserError(f"unknown scoring {scoring!r}: use {' or '.join(SCORINGS)}")
        self.session = session
        self.settings = session.settings  # every arm's base: sampling as the model recommends, unless given
        self.raw, self.scoring, self.greedy = raw, scoring, greedy
        # Task i is sampled with seed + i in every arm; no seed counts from 0, so that a report repeats.
        self.seed = 0 if self.settings.seed is None else self.settings.seed
        self.temps, self.parallel = temps, parallel
        self.arms = arms_for_temps(temps) if temps else arms_for(self.settings.temp, greedy)
        self.batch = BatchEngine(session.model, parallel) if parallel > 1 else None
        self.template = None
        if not raw:
            from ..engine.chat_template import ChatTemplate

            self.template = ChatTemplate(session.model)

    def baseline(self, model: str) -> "Evaluator":
        """The same evaluation of another model in this one's banned arms only: the same seeds and sampling
        (this model's, recommendations filled in, so that both models sample alike), banning the delete token
        that --delete-token names, else its own where it has one."""
        baseline = Evaluator(Session(replace(self.settings, model=model)), raw=self.raw, scoring=self.scoring,
                             greedy=self.greedy, temps=self.temps, parallel=self.parallel)
        baseline.arms = [arm for arm in self.arms if not arm.deletes]
        return baseline

    @property
    def delete_token(self) -> DeleteToken | None:
        return self.session.delete_token

    def options(self) -> dict:
        """How the evaluation ran, for its report."""
        s = self.settings
        return {"raw": self.raw, "scoring": self.scoring, "greedy": self.greedy, "temp": s.temp, "top_k": s.top_k,
                "top_p": s.top_p, "min_p": s.min_p, "repeat_penalty": s.repeat_penalty, "seed": self.seed,
                "max_tokens": s.max_tokens, "delete_token": s.delete_token, "max_deletes": s.max_deletes,
                "logit_bias": [list(pair) for pair in s.logit_bias], "temps": self.temps}

    def prompt_tokens(self, prompt: str) -> list[int]:
        messages = prompt if self.template is None else [{"role": "user", "content": prompt}]
        return prompt_tokens(self.session.model, messages, self.template)

    def answer(self, prompt: list[int], arm: EvalArm, seed: int, task: Task) -> Outcome:
        self.session.settings = arm.settings(self.settings, seed)
        deletes = ReplyDeletes()
        for event in self.session.generate(prompt):
            deletes.add(event)
        return self.outcome(event, deletes, task)

    def outcome(self, done: Done, deletes: ReplyDeletes, task: Task) -> Outcome:
        if done.finish_reason == INTERRUPTED:  # the engine ends a reply on Ctrl-C; the evaluation ends too
            raise KeyboardInterrupt
        return Outcome(
            text=done.text,
            correct=score(done.text, task.answer, self.scoring),
            deletes=done.counts.deletes,
            generated=done.counts.generated,
            seconds=done.timings.generation_s,
            longest_delete_run=deletes.longest_run,
            emptied=deletes.emptied,
        )

    def run(self, tasks: list[Task], progress: Callable[[], None] | None = None) -> list[ArmReport]:
        n_ctx = self.session.model.n_ctx
        prompts = []
        for index, task in enumerate(tasks):
            prompt = self.prompt_tokens(task.prompt)
            if len(prompt) >= n_ctx:
                raise UserError(f"task {index + 1}: the prompt is {len(prompt)} tokens; the context holds {n_ctx}")
            prompts.append(prompt)
        outcomes: dict[str, list[Outcome]] = {arm.name: [] for arm in self.arms}
        replies = self._batched(tasks, prompts, progress) if self.batch else self._serial(tasks, prompts, progress)
        for arm, outcome in replies:
            outcomes[arm.name].append(outcome)
        return [summarise(arm, outcomes[arm.name]) for arm in self.arms]

    def _serial(self, tasks, prompts, progress):
        for index, (task, prompt) in enumerate(zip(tasks, prompts)):
            for arm in self.arms:  # the same seed for the same task in every arm
                yield arm, self.answer(prompt, arm, self.seed + index, task)
                if progress is not None:
                    progress()

    def _batched(self, tasks, prompts, progress):
        """The same replies as _serial, stepped together; yielded in _serial's order once all have ended."""
        pairs = [(index, arm) for index in range(len(tasks)) for arm in self.arms]

        def requests():
            for index, arm in pairs:
                self.session.settings = arm.settings(self.settings, self.seed + index)
                yield BatchRequest(prompts[index], **self.session.reply_options())

        outcomes, deletes = {}, [ReplyDeletes() for _ in pairs]
        for number, event in self.batch.run(requests()):
            deletes[number].add(event)
            if isinstance(event, Done):
                outcomes[number] = self.outcome(event, deletes[number], tasks[pairs[number][0]])
                if progress is not None:
                    progress()
        for number, (_, arm) in enumerate(pairs):
            yield arm, outcomes[number]


def summarise(setting: EvalArm, outcomes: list[Outcome]) -> ArmReport:
    n = len(outcomes)
    correct = sum(o.correct for o in outcomes)
    deleted = [o for o in outcomes if o.deletes > 0]
    kept = [o for o in outcomes if o.deletes == 0]
    seconds = sum(o.seconds for o in outcomes)
    return ArmReport(
        name=setting.name,
        deletes_enabled=setting.deletes,
        greedy=setting.greedy,
        temp=0.0 if setting.greedy else setting.temp,
        answers=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        ci95=wilson(correct, n),
        share_with_delete=len(deleted) / n if n else 0.0,
        deletes_per_answer=sum(o.deletes for o in outcomes) / n if n else 0.0,
        max_deletes=max((o.deletes for o in outcomes), default=0),
        longest_delete_run=max((o.longest_delete_run for o in outcomes), default=0),
        share_emptied=sum(o.emptied for o in outcomes) / n if n else 0.0,
        accuracy_with_delete=_accuracy(deleted),
        answers_with_delete=len(deleted),
        accuracy_without_delete=_accuracy(kept),
        answers_without_delete=len(kept),
        tokens_per_second=sum(o.generated for o in outcomes) / seconds if seconds > 0 else 0.0,
        outcomes=outcomes,
    )


def _accuracy(outcomes: list[Outcome]) -> float | None:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else None
