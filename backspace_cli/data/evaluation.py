"""`backspace eval`: accuracy on a task file with deletes enabled against the delete token banned, same seeds."""
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

from backspace_convert.errors import UserError
from backspace_convert.keys import DeleteToken
from ..engine.events import INTERRUPTED
from ..engine.prompt import prompt_tokens
from ..engine.session import Session
from ..settings import Settings
from .jsonl import bad_line, read_json_lines

SCORINGS = ("exact", "contains")
Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


@dataclass(frozen=True)
class Task:
    prompt: str
    answer: str


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


@dataclass
class Outcome:
    """One reply."""

    text: str
    correct: bool
    deletes: int
    generated: int  # decode steps, deleted tokens included
    seconds: float  # generation time


@dataclass
class ArmReport:
    name: str
    deletes_enabled: bool
    greedy: bool
    temp: float | None  # the arm's own temperature in a sweep; None: the session's
    answers: int
    correct: int
    accuracy: float
    ci95: tuple[float, float]  # Wilson score interval
    share_with_delete: float  # answers with at least one delete
    deletes_per_answer: float
    accuracy_with_delete: float | None  # None when no answer had a delete
    answers_with_delete: int
    accuracy_without_delete: float | None
    answers_without_delete: int
    tokens_per_second: float
    outcomes: list[Outcome] = field(default_factory=list, repr=False)

    def to_json(self, with_outcomes: bool = False) -> dict:
        data = asdict(self)
        data["ci95"] = list(self.ci95)
        if not with_outcomes:
            del data["outcomes"]
        return data


def read_tasks(lines: Iterable[str]) -> list[Task]:
    tasks = []
    for number, data in read_json_lines(lines):
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or "answer" not in data:
            raise bad_line(number, 'expected {"prompt": TEXT, "answer": TEXT}')
        tasks.append(Task(data["prompt"], str(data["answer"])))
    if not tasks:
        raise UserError("the task file has no tasks")
    return tasks


def score(reply: str, answer: str, scoring: str) -> bool:
    reply, answer = reply.strip(), answer.strip()
    return reply == answer if scoring == "exact" else answer in reply


def wilson(correct: int, total: int) -> tuple[float, float]:
    """The Wilson score interval: honest at small counts and at accuracies near 0 or 1."""
    if total == 0:
        return (0.0, 0.0)
    p = correct / total
    denominator = 1 + Z95**2 / total
    centre = (p + Z95**2 / (2 * total)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / total + Z95**2 / (4 * total**2)) / denominator
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return (low, high)


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
                 temps: list[float] | None = None) -> None:
        """raw: the prompt as raw text, not through the chat template; scoring: "exact" (the reply, stripped,
        is the answer) or "contains" (the answer is in it); greedy: also run both arms greedily; temps: a
        sweep over these temperatures instead, both arms at each."""
        if scoring not in SCORINGS:
            raise UserError(f"unknown scoring {scoring!r}: use {' or '.join(SCORINGS)}")
        self.session = session
        self.settings = session.settings  # every arm's base: sampling as the model recommends, unless given
        self.raw, self.scoring, self.greedy = raw, scoring, greedy
        # Task i is sampled with seed + i in every arm; no seed counts from 0, so that a report repeats.
        self.seed = 0 if self.settings.seed is None else self.settings.seed
        self.temps = temps
        self.arms = arms_for_temps(temps) if temps else arms_for(self.settings.temp, greedy)
        self.template = None
        if not raw:
            from ..engine.chat_template import ChatTemplate

            self.template = ChatTemplate(session.model)

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
        done = None
        for event in self.session.generate(prompt):
            done = event
        if done.finish_reason == INTERRUPTED:  # the engine ends a reply on Ctrl-C; the evaluation ends too
            raise KeyboardInterrupt
        return Outcome(
            text=done.text,
            correct=score(done.text, task.answer, self.scoring),
            deletes=done.counts.deletes,
            generated=done.counts.generated,
            seconds=done.timings.generation_s,
        )

    def run(self, tasks: list[Task], progress: Callable[[], None] | None = None) -> list[ArmReport]:
        outcomes: dict[str, list[Outcome]] = {arm.name: [] for arm in self.arms}
        n_ctx = self.session.model.n_ctx
        for index, task in enumerate(tasks):
            prompt = self.prompt_tokens(task.prompt)
            if len(prompt) >= n_ctx:
                raise UserError(f"task {index + 1}: the prompt is {len(prompt)} tokens; the context holds {n_ctx}")
            for arm in self.arms:  # the same seed for the same task in every arm
                outcomes[arm.name].append(self.answer(prompt, arm, self.seed + index, task))
                if progress is not None:
                    progress()
        return [summarise(arm, outcomes[arm.name]) for arm in self.arms]


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
        accuracy_with_delete=_accuracy(deleted),
        answers_with_delete=len(deleted),
        accuracy_without_delete=_accuracy(kept),
        answers_without_delete=len(kept),
        tokens_per_second=sum(o.generated for o in outcomes) / seconds if seconds > 0 else 0.0,
        outcomes=outcomes,
    )


@dataclass
class PairedComparison:
    """Deletes enabled against banned on the same tasks with the same seeds: each task is a pair."""

    setting: str  # the deletes-enabled setting
    baseline: str  # its --no-delete counterpart
    gain: float  # accuracy difference, enabled minus banned
    ci95: tuple[float, float]  # of the paired difference
    only_with_deletes: int  # tasks right with deletes and wrong without
    only_without: int  # tasks right without deletes and wrong with them
    p_value: float  # exact McNemar test: how often chance alone would split the discordant pairs so unevenly


def compare(enabled: ArmReport, banned: ArmReport) -> PairedComparison:
    n = len(enabled.outcomes)
    wins = sum(a.correct and not b.correct for a, b in zip(enabled.outcomes, banned.outcomes))
    losses = sum(b.correct and not a.correct for a, b in zip(enabled.outcomes, banned.outcomes))
    gain = (wins - losses) / n if n else 0.0
    half = Z95 * math.sqrt(max(0.0, wins + losses - (wins - losses) ** 2 / n)) / n if n else 0.0
    discordant = wins + losses
    tail = sum(math.comb(discordant, k) for k in range(min(wins, losses) + 1)) / 2**discordant
    return PairedComparison(enabled.name, banned.name, gain, (gain - half, gain + half), wins, losses,
                            min(1.0, 2 * tail))


def comparisons(reports: list[ArmReport]) -> list[PairedComparison]:
    """Each deletes-enabled setting against the banned one with the same sampling."""
    return [compare(enabled, banned) for enabled in reports if enabled.deletes_enabled
            for banned in reports if not banned.deletes_enabled and banned.greedy == enabled.greedy
            and banned.temp == enabled.temp]


def _accuracy(outcomes: list[Outcome]) -> float | None:
    return sum(o.correct for o in outcomes) / len(outcomes) if outcomes else None


def report_json(model_path: str, tasks: list[Task], options: dict, reports: list[ArmReport],
                delete_token: str | None) -> dict:
    return {
        "model": model_path,
        "tasks": len(tasks),
        "delete_token": delete_token,
        "options": options,
        "settings": [report.to_json() for report in reports],
        "comparisons": [asdict(comparison) for comparison in comparisons(reports)],
    }


def report_table(reports: list[ArmReport], title: str):
    """The reports as a rich table: one column per setting, so that they compare side by side."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for r in reports:
        table.add_column(r.name, justify="right")
    rows = [
        ("accuracy", lambda r: f"{r.accuracy:.1%} ({r.correct}/{r.answers})"),
        ("95% CI", lambda r: f"{r.ci95[0]:.1%} – {r.ci95[1]:.1%}"),
        ("answers with a delete", lambda r: f"{r.share_with_delete:.1%}"),
        ("deletes / answer", lambda r: f"{r.deletes_per_answer:.2f}"),
        ("accuracy, with a delete", lambda r: f"{_percent(r.accuracy_with_delete)} (n={r.answers_with_delete})"),
        ("accuracy, no delete", lambda r: f"{_percent(r.accuracy_without_delete)} (n={r.answers_without_delete})"),
        ("tokens/s", lambda r: f"{r.tokens_per_second:,.0f}"),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in reports))
    paired = {comparison.setting: comparison for comparison in comparisons(reports)}
    table.add_row("gain over no-delete, paired", *(_gain(paired.get(r.name)) for r in reports))
    return table


def sweep_table(reports: list[ArmReport], title: str):
    """A sweep as a rich table: one row per temperature, both arms and their paired gain side by side."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("temperature", "with deletes", "no-delete", "gain over no-delete, paired", "deletes / answer"):
        table.add_column(column, justify="right")
    by_name = {report.name: report for report in reports}
    for comparison in comparisons(reports):
        on, off = by_name[comparison.setting], by_name[comparison.baseline]
        table.add_row("greedy" if on.greedy else f"{on.temp:g}", _accuracy_cell(on), _accuracy_cell(off),
                      _gain(comparison), f"{on.deletes_per_answer:.2f}")
    return table


def _accuracy_cell(report: ArmReport) -> str:
    low, high = report.ci95
    return f"{report.accuracy:.1%} ({low:.1%} – {high:.1%})"


def _gain(comparison: PairedComparison | None) -> str:
    if comparison is None:
        return "–"
    low, high = comparison.ci95
    return (f"{comparison.gain * 100:+.1f} pts ({low * 100:+.1f} to {high * 100:+.1f}), "
            f"p={comparison.p_value:.2g}")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
