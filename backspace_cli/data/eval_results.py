"""What an evaluation found: each reply, each setting's report, and each pair of settings compared task by task,
within one model or against a baseline model's."""
from dataclasses import asdict, dataclass, field

from .eval_stats import mcnemar_p, paired_difference


@dataclass
class Outcome:
    """One reply."""

    text: str
    correct: bool
    deletes: int
    generated: int  # decode steps, deleted tokens included
    seconds: float  # generation time
    longest_delete_run: int  # the most deletes with no token written between them
    emptied: bool  # a delete took back the last token the reply still showed


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
    max_deletes: int  # the most deletes in one reply
    longest_delete_run: int  # the longest run of deletes in any reply
    share_emptied: float  # replies that deleted everything they had written, at some point
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


@dataclass
class BaselineRun:
    """A baseline model's banned settings, run on the same tasks with the same seeds and sampling."""

    model: str  # its path
    reports: list[ArmReport]


@dataclass
class PairedComparison:
    """Deletes enabled against banned on the same tasks with the same seeds: each task is a pair."""

    setting: str  # the deletes-enabled setting
    baseline: str  # its --no-delete counterpart, of the same model or of a baseline model
    gain: float  # accuracy difference, enabled minus banned
    ci95: tuple[float, float]  # of the paired difference
    only_with_deletes: int  # tasks right with deletes and wrong without
    only_without: int  # tasks right without deletes and wrong with them
    p_value: float  # exact McNemar test: how often chance alone would split the discordant pairs so unevenly


def compare(enabled: ArmReport, banned: ArmReport) -> PairedComparison:
    pairs = list(zip(enabled.outcomes, banned.outcomes))
    wins = sum(a.correct and not b.correct for a, b in pairs)
    losses = sum(b.correct and not a.correct for a, b in pairs)
    gain, ci95 = paired_difference(wins, losses, len(pairs))
    return PairedComparison(enabled.name, banned.name, gain, ci95, wins, losses, mcnemar_p(wins, losses))


def comparisons(reports: list[ArmReport], banned_reports: list[ArmReport] | None = None) -> list[PairedComparison]:
    """Each deletes-enabled setting against the banned one with the same sampling, among `banned_reports`
    (a baseline model's) if given, else among `reports`."""
    candidates = reports if banned_reports is None else banned_reports
    return [compare(enabled, banned) for enabled in reports if enabled.deletes_enabled
            for banned in candidates if not banned.deletes_enabled and banned.greedy == enabled.greedy
            and banned.temp == enabled.temp]


def best_against_best(reports: list[ArmReport], banned_reports: list[ArmReport]) -> PairedComparison | None:
    """The most accurate deletes-enabled setting against the most accurate banned one (the bar: a baseline's
    best setting); the earlier setting on a tie; None when either side has none."""
    enabled = [report for report in reports if report.deletes_enabled]
    banned = [report for report in banned_reports if not report.deletes_enabled]
    if not enabled or not banned:
        return None
    return compare(max(enabled, key=lambda r: r.accuracy), max(banned, key=lambda r: r.accuracy))
