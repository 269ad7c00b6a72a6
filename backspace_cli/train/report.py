"""The end of a training run on screen and on disk: a table per stage, the curves, and the held-out A/B."""
from pathlib import Path

from backspace_convert.atomic import atomic_output
from backspace_convert.errors import missing_extra


def stages_table(reports):
    """One row per stage run: its steps, time, last loss or reward, and its last held-out probe."""
    from rich.table import Table

    table = Table(title="backspace train")
    for column in ("stage", "steps", "time", "loss / reward", "held-out, deletes", "held-out, no-delete",
                   "deletes / reply"):
        table.add_column(column, justify="right")
    for report in reports:
        log = report.last_log
        measure = (f"reward {log['reward']:.3f}" if "reward" in log
                   else f"loss {log.get('loss', log.get('train_loss', float('nan'))):.4f}")
        probe = report.probes[-1] if report.probes else None
        table.add_row(report.stage, str(report.steps), f"{report.seconds:.0f} s", measure,
                      f"{probe.with_deletes:.1%}" if probe else "–", f"{probe.without:.1%}" if probe else "–",
                      f"{probe.deletes:.2f}" if probe else "–")
    return table


def plot_curves(reports, path: Path) -> None:
    """Loss (or reward) and held-out accuracy against the run's steps, the stages one after another."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise missing_extra("--plot needs matplotlib", "plot") from None
    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(8, 6), sharex=True)
    offset = 0
    for report in reports:
        points = [(offset + log["step"], log.get("reward", log.get("loss"))) for log in report.logs
                  if log.get("reward", log.get("loss")) is not None]
        if points:
            top.plot(*zip(*points), label=f"{report.stage} ({'reward' if report.stage == 'grpo' else 'loss'})")
        if report.probes:
            steps = [offset + p.step for p in report.probes]
            bottom.plot(steps, [p.with_deletes for p in report.probes], "o-", label=f"{report.stage}, deletes")
            bottom.plot(steps, [p.without for p in report.probes], "s--", label=f"{report.stage}, no-delete")
        offset += report.steps
    top.set_ylabel("loss / reward")
    bottom.set_ylabel("held-out accuracy, greedy")
    bottom.set_xlabel("step")
    for axes in (top, bottom):
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_output(path, force=True) as written:
        figure.savefig(written, format=path.suffix.lstrip(".") or "png")
    pyplot.close(figure)
