"""eval's --plot: accuracy against temperature, with deletes and without, each point with its 95% CI."""
from pathlib import Path

from backspace_convert.atomic import atomic_output
from backspace_convert.errors import UserError, missing_extra

from .eval_results import ArmReport

FORMATS = ("png", "svg", "pdf")


def chart_format(path: Path) -> str:
    """The format that `path`'s suffix names; asked before an evaluation, so that a typo costs no run."""
    kind = path.suffix.lstrip(".").lower()
    if kind not in FORMATS:
        raise UserError(f"--plot {path}: name a .png, .svg or .pdf file")
    return kind


def plot_sweep(reports: list[ArmReport], path: Path, title: str) -> None:
    """Write the chart to `path`, whose suffix names the format; greedy decoding is temperature 0."""
    kind = chart_format(path)
    try:
        import matplotlib
    except ImportError:
        raise missing_extra("--plot needs matplotlib", "plot") from None
    matplotlib.use("Agg")  # no display: draw into the file only
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4), dpi=120)
    for enabled, label, style in ((True, "with deletes", "o-"), (False, "no-delete", "s--")):
        arm = sorted((r for r in reports if r.deletes_enabled == enabled), key=lambda r: r.temp)
        temps = [r.temp for r in arm]
        accuracy = [100 * r.accuracy for r in arm]
        errors = [[100 * (r.accuracy - r.ci95[0]) for r in arm], [100 * (r.ci95[1] - r.accuracy) for r in arm]]
        axes.errorbar(temps, accuracy, yerr=errors, fmt=style, capsize=4, label=label)
    axes.set_xlabel("temperature (0 is greedy)")
    axes.set_ylabel("accuracy, % (95% CI)")
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_output(path, force=True) as temporary:
        figure.savefig(temporary, format=kind)
    pyplot.close(figure)
