"""eval's report as JSON, as rich tables (one column per setting, or one row per temperature of a sweep, and one
row per pair against a baseline model), and its replies as the --answers file's records."""
from collections.abc import Iterator
from dataclasses import asdict

from .eval_results import ArmReport, BaselineRun, PairedComparison, best_against_best, comparisons
from .tasks import Task

# Before a baseline model's setting in the --answers file, which holds both models' replies.
BASELINE_PREFIX = "baseline: "


def report_json(model_path: str, tasks: list[Task], options: dict, reports: list[ArmReport],
                delete_token: str | None, baseline: BaselineRun | None = None) -> dict:
    data = {
        "model": model_path,
        "tasks": len(tasks),
        "delete_token": delete_token,
        "options": options,
        "settings": [report.to_json() for report in reports],
        "comparisons": [asdict(comparison) for comparison in comparisons(reports)],
    }
    if baseline is not None:
        best = best_against_best(reports, baseline.reports)
        data["baseline"] = {
            "model": baseline.model,
            "settings": [arm.to_json() for arm in baseline.reports],
            "comparisons": [asdict(comparison) for comparison in comparisons(reports, baseline.reports)],
            "best": None if best is None else asdict(best),
        }
    return data


def answer_records(reports: list[ArmReport], baseline: BaselineRun | None = None) -> Iterator[dict]:
    """Every reply, per setting and task; a baseline model's after the model's, its settings named as such."""
    named = [("", report) for report in reports]
    named += [(BASELINE_PREFIX, report) for report in (baseline.reports if baseline else [])]
    for prefix, report in named:
        for index, outcome in enumerate(report.outcomes):
            yield {"setting": prefix + report.name, "task": index, "text": outcome.text,
                   "correct": outcome.correct, "deletes": outcome.deletes,
                   "longest_delete_run": outcome.longest_delete_run, "emptied": outcome.emptied}


def report_table(reports: list[ArmReport], title: str):
    """The reports as a rich table: one column per setting, so that they compare side by side; four settings
    (--greedy's) fit an 80-column terminal."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("", no_wrap=True)
    for r in reports:
        table.add_column(r.name, justify="right")
    paired = {comparison.setting: comparison for comparison in comparisons(reports)}
    rows = [
        ("accuracy", lambda r: f"{r.accuracy:.1%}"),
        ("correct", lambda r: f"{r.correct}/{r.answers}"),
        ("95% CI", lambda r: _interval(r.ci95)),
        ("used a delete", lambda r: f"{r.share_with_delete:.1%}"),
        ("deletes / answer", lambda r: f"{r.deletes_per_answer:.2f}"),
        ("most deletes", lambda r: f"{r.max_deletes}"),
        ("longest run", lambda r: f"{r.longest_delete_run}"),
        ("emptied a reply", lambda r: f"{r.share_emptied:.1%}"),
        ("acc. with delete", lambda r: f"{_percent(r.accuracy_with_delete)} n={r.answers_with_delete}"),
        ("acc. no delete", lambda r: f"{_percent(r.accuracy_without_delete)} n={r.answers_without_delete}"),
        ("tokens/s", lambda r: f"{r.tokens_per_second:,.0f}"),
        ("paired gain", lambda r: _gain(paired.get(r.name))),
        ("gain 95% CI", lambda r: _gain_interval(paired.get(r.name))),
        ("McNemar", lambda r: _p_value(paired.get(r.name))),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in reports))
    return table


def sweep_table(reports: list[ArmReport], title: str):
    """A sweep as a rich table: one row per temperature, both settings' accuracies under their 95% CIs, and
    the paired gain with its p-value; it fits an 80-column terminal."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("temp", "with deletes", "no-delete", "paired gain", "gain 95% CI", "deletes / answer"):
        table.add_column(column, justify="right")
    by_name = {report.name: report for report in reports}
    for comparison in comparisons(reports):
        on, off = by_name[comparison.setting], by_name[comparison.baseline]
        table.add_row("greedy" if on.greedy else f"{on.temp:g}", _accuracy_cell(on), _accuracy_cell(off),
                      f"{_gain(comparison)}\n{_p_value(comparison)}", _gain_interval(comparison),
                      f"{on.deletes_per_answer:.2f}")
    return table


def baseline_table(reports: list[ArmReport], baseline: BaselineRun, title: str):
    """The model's deletes-enabled settings against a baseline model's banned ones as a rich table: a row per
    sampling both share, then the most accurate setting of each against the other, its samplings named; it fits
    an 80-column terminal."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("sampling", "with deletes", "baseline", "paired gain", "gain 95% CI", "won/lost"):
        table.add_column(column, justify="right")
    by_name = {report.name: report for report in reports}
    baseline_by_name = {report.name: report for report in baseline.reports}

    def add(comparison: PairedComparison, label: str | None = None) -> None:
        on, off = by_name[comparison.setting], baseline_by_name[comparison.baseline]
        on_cell, off_cell = _accuracy_cell(on), _accuracy_cell(off)
        if label is not None:  # the two sides may differ in sampling: each names its own
            on_cell, off_cell = f"{on_cell}\n{_sampling(on)}", f"{off_cell}\n{_sampling(off)}"
        table.add_row(label or _sampling(on), on_cell, off_cell, f"{_gain(comparison)}\n{_p_value(comparison)}",
                      _gain_interval(comparison), f"{comparison.only_with_deletes}/{comparison.only_without}")

    for comparison in comparisons(reports, baseline.reports):
        add(comparison)
    best = best_against_best(reports, baseline.reports)
    if best is not None:
        table.add_section()
        add(best, "best")
    return table


def _sampling(report: ArmReport) -> str:
    if report.greedy:
        return "greedy"
    return "sampled" if report.temp is None else f"temp {report.temp:g}"


def _interval(ci: tuple[float, float]) -> str:
    low, high = ci
    return f"{low * 100:.1f}–{high:.1%}"


def _accuracy_cell(report: ArmReport) -> str:
    return f"{report.accuracy:.1%}\n{_interval(report.ci95)}"


def _gain(comparison: PairedComparison | None) -> str:
    return "–" if comparison is None else f"{comparison.gain * 100:+.1f} pts"


def _gain_interval(comparison: PairedComparison | None) -> str:
    if comparison is None:
        return "–"
    low, high = comparison.ci95
    return f"{low * 100:+.1f} to {high * 100:+.1f}"


def _p_value(comparison: PairedComparison | None) -> str:
    return "–" if comparison is None else f"p={comparison.p_value:.2g}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
