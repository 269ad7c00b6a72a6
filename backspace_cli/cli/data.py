"""The data commands, `backspace synth` and `backspace eval`: click wiring only; the work is elsewhere."""
import os
from contextlib import nullcontext
from pathlib import Path

import click

from backspace_convert.atomic import never_an_input, output_stream

from .. import defaults
from ..data.labels import IGNORE
from .friendly import friendly_errors
from .options import CONTEXT_SETTINGS, eval_engine_options, setting_type, settings_from


def _parse_temps(context, parameter, value):
    """'0,0.8,1.5' as temperatures, each checked by the rule --temp follows."""
    if value is None:
        return None
    temp_type = setting_type("temp")
    try:
        temps = [temp_type.convert(part.strip(), parameter, context) for part in value.split(",") if part.strip()]
    except click.BadParameter as error:
        raise click.BadParameter(f"{value!r}: {error.message}") from None
    if not temps:
        raise click.BadParameter(f"{value!r} names no temperature (for example 0,0.8,1.5)")
    return sorted(set(temps))


def _count_lines(path: str) -> int | None:
    """The progress bar's total; a pipe (`-`, /dev/stdin) is read once only, so it has none."""
    if path == "-" or not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        return sum(1 for _ in file)


def _stream(path: str, name: str) -> str:
    """`-` is the process's standard input or output: the file that /dev/stdin or /dev/stdout is."""
    return f"/dev/{name}" if path == "-" else path


def _refuse_inputs_as_outputs(outputs: list[str | None], inputs: list[str | None]) -> None:
    """Before any work: no output may replace an input, whatever name it is given."""
    sources = [Path(path) for path in inputs if path is not None]
    for output in outputs:
        if output is not None:
            never_an_input(Path(output), sources)


def _open_input(path: str):
    """Bytes that are not UTF-8 are kept (as surrogates), so that the reader refuses their line by its number."""
    return click.open_file(path, encoding="utf-8", errors="surrogateescape")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True, help="JSONL in chat messages form, the delete token written inline.")
@click.option("--tokenized", type=click.Path(dir_okay=False), help="Also write input_ids and labels here "
              f"(errors labelled {IGNORE}), one line per sample.")
@click.option("--strategy", default="random", show_default=True, metavar="random|reply|model:PATH.gguf",
              help="random: any vocabulary token; reply: a token used elsewhere in the same reply (a wrong "
              "digit in a number); model:PATH: a plausible mistake from that model's top alternatives "
              "(never the true token).")
@click.option("--tokenizer", type=click.Path(), help="The tokenizer that splits the text: a GGUF, or an HF "
              "tokenizer.json or save_pretrained folder (the [hf] extra) (default: the strategy's model, else the "
              "built-in model; --tokenized needs one named).")
@click.option("--rate", type=click.FloatRange(0, 1), default=defaults.SYNTH_RATE, show_default=True,
              help="Chance of an error before each response token.")
@click.option("--max-errors", type=click.IntRange(min=0), default=defaults.SYNTH_MAX_ERRORS, show_default=True,
              help="Errors per sample.")
@click.option("--error-tokens", type=click.IntRange(min=1), default=defaults.SYNTH_ERROR_TOKENS, show_default=True,
              help="Longest error: k wrong tokens then k deletes, k from 1 to this.")
@click.option("--top-k", type=click.IntRange(min=1), default=defaults.SYNTH_TOP_K, show_default=True,
              help="model strategy: how many top alternatives to sample the mistake from.")
@click.option("--seed", type=int, default=defaults.SYNTH_SEED, show_default=True)
@click.option("--marker", help='Write this text for a delete instead of the delete token, e.g. "[DELETE]".')
@click.option("-q", "--quiet", is_flag=True, help="No statistics at the end.")
@friendly_errors(writes_files=True)
def synth(input_path, output, tokenized, strategy, tokenizer, rate, max_errors, error_tokens, top_k, seed,
          marker, quiet):
    """Make training data with deletes: inject errors into correct samples, each followed by its delete.

    INPUT is JSONL of {"prompt", "response"} or {"messages"}, or plain text lines ("-" for stdin).
    Plain text lines come out as {"text"}. Errors go into assistant replies only.
    """
    from rich.console import Console

    from ..data.synth import SynthOptions, open_synthesizer, parse_strategy, run_synth, stats_tables

    if marker == "":
        raise click.ClickException("--marker must not be empty")
    _, strategy_model = parse_strategy(strategy)
    _refuse_inputs_as_outputs([_stream(output, "stdout"), tokenized],
                              [_stream(input_path, "stdin"), tokenizer, strategy_model])
    options = SynthOptions(rate=rate, max_errors=max_errors, error_tokens=error_tokens, seed=seed,
                           marker=marker, top_k=top_k)
    console = Console(stderr=True)
    total = _count_lines(input_path)
    synthesizer = open_synthesizer(strategy, tokenizer, options, tokenized=tokenized is not None)
    with _open_input(input_path) as source, \
            (click.open_file("-", "w") if output == "-" else output_stream(output, force=True)) as out, \
            (output_stream(tokenized, force=True) if tokenized else nullcontext()) as tokens:
        stats = run_synth(source, out, tokens, synthesizer, total=total, console=console)
    if not quiet:
        for table in stats_tables(stats):
            console.print(table)


@click.command("eval", context_settings=CONTEXT_SETTINGS)
@click.argument("tasks_path", metavar="TASKS", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--raw", is_flag=True, help="Give the prompt as raw text, not through the chat template.")
@click.option("--scoring", type=click.Choice(["exact", "contains"]), default="exact", show_default=True,
              help="exact: the reply (stripped) is the answer; contains: the answer appears in the reply.")
@click.option("--greedy", is_flag=True, help="Also run both settings greedily.")
@click.option("--temps", callback=_parse_temps, metavar="T,T,...",
              help="A sweep: both settings at each temperature (0 is greedy), in one table; replaces --temp and --greedy.")
@click.option("--plot", type=click.Path(dir_okay=False), help="With --temps: also write a chart (.png, .svg or .pdf).")
@click.option("--seed", type=setting_type("seed"), default=0, show_default=True,
              help="Task i is sampled with SEED + i in every setting.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--answers", type=click.Path(dir_okay=False), help="Also write every reply, per setting, as JSONL.")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Also write the report as JSON (what --json prints) to this file; the table still prints.")
@click.option("--parallel", type=click.IntRange(min=1), default=defaults.EVAL_PARALLEL, show_default=True,
              help="Replies decoded together, one llama_decode call a step for all of them (1: one at a time).")
@click.option("--baseline", metavar="PATH.gguf", help="Also run this model (the same fine-tune without deletes, "
              "say) in the banned settings, with the same seeds and sampling, and compare the model with it.")
@eval_engine_options
@friendly_errors(writes_files=True)
def eval_command(tasks_path, raw, scoring, greedy, temps, plot, limit, as_json, answers, report, parallel, baseline,
                 **options):
    """Measure whether the delete token helps: accuracy on TASKS with deletes enabled and with the
    delete token banned (as complete's --no-delete bans it), with the same seeds.

    TASKS is JSONL of {"prompt", "answer"}.
    """
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..default_model import model_or_builtin
    from ..data.eval_report import answer_records, baseline_table, report_json, report_table, sweep_table
    from ..data.eval_results import BaselineRun
    from ..data.evaluation import Evaluator
    from ..data.tasks import read_tasks
    from ..engine.session import Session

    if temps and (greedy or options.get("temp") is not None):
        raise click.UsageError("--temps replaces --temp and --greedy")
    if plot and not temps:
        raise click.UsageError("--plot needs --temps")
    if plot:
        from ..data.sweep_plot import chart_format

        chart_format(Path(plot))
    settings = settings_from(options)
    settings.model = model_or_builtin(settings.model)  # as the report names it
    if baseline is not None:
        baseline = model_or_builtin(baseline)  # an empty path is the built-in model, as with -m
    _refuse_inputs_as_outputs([answers, plot, report], [_stream(tasks_path, "stdin"), settings.model, baseline])
    with _open_input(tasks_path) as lines:
        tasks = read_tasks(lines)[:limit]
    evaluator = Evaluator(Session(settings), raw=raw, scoring=scoring, greedy=greedy, temps=temps, parallel=parallel)
    # Opened before the run, so that a baseline that cannot be opened is refused before any task runs.
    against = evaluator.baseline(baseline) if baseline is not None else None
    errors = Console(stderr=True)
    for run in (evaluator, against):
        if run is not None and run.batch is not None and run.batch.notice:
            errors.print(f"[yellow]{run.batch.notice}.[/yellow]")
    if evaluator.delete_token is None:
        errors.print("[yellow]This model has no delete token: both settings generate plainly.[/yellow]")
    steps = len(tasks) * (len(evaluator.arms) + (len(against.arms) if against else 0))
    columns = (TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # --answers is opened first, so that a path that cannot be written is refused before the run.
    with output_stream(answers, force=True) if answers else nullcontext() as out:
        with Progress(*columns, console=errors, transient=True, disable=not errors.is_terminal) as bar:
            task = bar.add_task("eval", total=steps)
            reports = evaluator.run(tasks, progress=lambda: bar.advance(task))
            baseline_run = None
            if against is not None:
                baseline_run = BaselineRun(baseline, against.run(tasks, progress=lambda: bar.advance(task)))
        for record in answer_records(reports, baseline_run) if out else ():
            out.write(json.dumps(record) + "\n")
    token = evaluator.delete_token.text if evaluator.delete_token else None
    document = json.dumps(report_json(settings.model, tasks, evaluator.options(), reports, token, baseline_run),
                          indent=2)
    if report:
        with output_stream(report, force=True) as written:
            written.write(document + "\n")
    if as_json:
        click.echo(document)
    o = evaluator.settings  # with the model's recommended sampling filled in
    if temps:
        sampling = f"temperatures {', '.join(f'{t:g}' for t in temps)}, top-k {o.top_k}, top-p {o.top_p}, min-p {o.min_p}"
    else:
        sampling = "greedy" if o.temp == 0 else f"temp {o.temp}, top-k {o.top_k}, top-p {o.top_p}, min-p {o.min_p}"
    title = f"backspace eval: {len(tasks)} tasks, {sampling}, {scoring} match"
    if plot:
        from ..data.sweep_plot import plot_sweep

        plot_sweep(reports, Path(plot), f"{Path(settings.model).name}: {len(tasks)} tasks")
    if not as_json:
        console = Console()
        console.print((sweep_table if temps else report_table)(reports, title))
        if baseline_run is not None:
            console.print(baseline_table(reports, baseline_run, f"against the baseline {Path(baseline).name}"))
