"""eval's report as JSON, and as a rich table: one column per setting, or one row per temperature of a sweep."""
from dataclasses import asdict

from .eval_results import ArmReport, PairedComparison, comparisons
from .tasks import Task


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
