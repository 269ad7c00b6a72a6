"""`backspace train` from start to end: start or resume the run, train its stages, export the GGUF, and A/B it on held-out tasks."""
import json
from dataclasses import asdict
from pathlib import Path

from backspace_convert.atomic import atomic_output, never_an_input
from backspace_convert.errors import UserError
from .recipe import TrainRecipe, read_recipe
from .run import FINAL, RUN_FILE, Interrupted, TrainJob, held_out_ab, train


def default_work(output: Path) -> Path:
    """OUT.gguf -> OUT.train/, beside the output: the run's checkpoints and stage models."""
    from .export import gguf_stem

    return output.with_name(gguf_stem(output) + ".train")


def prepare_job(tasks: Path | None, output: Path | None, resume: Path | None, options: dict,
                recipe_file: Path | None, overrides: dict) -> tuple[TrainJob, TrainRecipe]:
    """A new run from the command line, or the run saved in `resume` (which the command line may not change)."""
    if resume is not None:
        if tasks is not None or output is not None or any(v is not None for v in options.values()) or recipe_file:
            raise UserError("--resume takes the run as it was started: give no tasks, output or training options")
        job = TrainJob.load(resume)
        return job, read_recipe(None, job.recipe)
    if tasks is None or output is None:
        raise UserError("give the task file and -o OUT.gguf (or --resume DIR)")
    if (options.get("model") is None) == (options.get("from_scratch") is None):
        raise UserError("give -m MODEL, or --from-scratch tiny|CONFIG.json")
    recipe = read_recipe(recipe_file, overrides)
    work = Path(options.pop("work") or default_work(output))
    if (work / RUN_FILE).exists():
        raise UserError(f"{work} holds a run already: --resume {work} goes on with it, or remove it")
    inputs = [tasks] + [Path(p) for p in (options.get("eval_tasks"), options.get("model")) if p is not None]
    never_an_input(output, inputs)
    job = TrainJob(tasks=str(tasks), output=str(output), work=str(work), recipe=recipe.to_json(),
                   **{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None})
    return job, recipe


def run_train(job: TrainJob, recipe: TrainRecipe, *, force: bool, plot: Path | None, say, show) -> int:
    """Train, export and evaluate; returns the exit status (130: stopped at a checkpoint by Ctrl-C)."""
    from ..data.eval_report import report_json, report_table
    from .export import export_gguf
    from .report import plot_curves, stages_table

    output, work = Path(job.output), Path(job.work)
    if output.exists() and not force and not output.is_char_device() and not output.is_fifo():
        raise UserError(f"output exists: {output} (use --force to replace it)")
    job.save()
    try:
        bundle, reports, held_out = train(job, recipe, say)
    except Interrupted as stop:
        say(f"interrupted: {stop}; resume with: backspace train --resume {work}")
        return 130
    if reports:
        show(stages_table(reports))
    if plot is not None:
        plot_curves(reports, plot)
        say(f"wrote {plot}")
    checkpoint = work / recipe.stages[-1] / FINAL
    say(f"HF checkpoint: {checkpoint}")
    source = Path(job.model) if job.model and Path(job.model).is_file() else None
    export_gguf(checkpoint, output, outtype=job.outtype, recipe=recipe, source=source, force=force, say=say)
    say(f"wrote {output}")
    if recipe.eval_tasks:
        evaluator, arms = held_out_ab(output, held_out, job.scoring, recipe)
        if evaluator is not None:
            show(report_table(arms, f"{output.name} on {len(arms[0].outcomes)} held-out tasks"))
            saved = output.with_name(output.name + ".eval.json")
            with atomic_output(saved, force=True) as written:
                report = report_json(str(output), [], evaluator.options(), arms, evaluator.delete_token and
                                     evaluator.delete_token.text)
                report["tasks"] = len(arms[0].outcomes)
                report["training"] = {"recipe": recipe.to_json(), "stages": [asdict(r) for r in reports]}
                written.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
            say(f"wrote {saved}")
    return 0
