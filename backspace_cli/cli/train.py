"""`backspace train`: click wiring only; the work happens in backspace_cli.train (the train extra)."""
from pathlib import Path

import click

from backspace_convert import hf_checkpoint

from .friendly import friendly_errors
from .options import CONTEXT_SETTINGS
from .signals import INTERRUPTED_STATUS



def _pairs(value: str | None, option: str) -> dict:
    """"sft=200,own=100" -> {"sft_steps": 200, "own_steps": 100}."""
    steps = {}
    for item in (value or "").split(","):
        if not item:
            continue
        stage, _, count = item.partition("=")
        if not count.isdigit():
            raise click.BadParameter(f"expected STAGE=STEPS[,STAGE=STEPS...], got {item!r}", param_hint=option)
        steps[f"{stage.strip()}_steps"] = int(count)
    return steps


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("tasks", required=False, type=click.Path(path_type=Path))
@click.option("-m", "--model", help="An HF checkpoint folder, or a GGUF file that transformers can load.")
@click.option("--from-scratch", metavar="tiny|CONFIG.json", help="Start a small Llama instead: tiny, or LlamaConfig fields.")
@click.option("--tokenizer", metavar="PATH", help="With --from-scratch: an HF tokenizer [default: one trained on the tasks].")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="The GGUF to write.")
@click.option("--stages", help="Which stages run, in order: some of sft,own,grpo [default: all].")
@click.option("--steps", help="Steps per stage, e.g. sft=200,own=100,grpo=20.")
@click.option("--recipe", type=click.Path(path_type=Path), help="A JSON file of recipe fields (backspace_cli/train/recipe.py).")
@click.option("--eval-tasks", type=click.Path(path_type=Path), help="Held-out tasks [default: a share of TASKS].")
@click.option("--scoring", help="exact, contains, or MODULE:FUNCTION(reply, answers) -> score [default: exact].")
@click.option("--delete-cost", type=float, help="GRPO's reward: the score less this per delete.")
@click.option("--seed", type=int, help="Seeds everything: the same command and build give the same weights.")
@click.option("--outtype", type=click.Choice(hf_checkpoint.OUTTYPES),
              help="The GGUF's tensor type, as convert DIR takes it [default: f32].")
@click.option("--work", type=click.Path(path_type=Path), help="Checkpoints and stage models [default: OUT.train/].")
@click.option("--resume", type=click.Path(path_type=Path), metavar="DIR", help="Go on with the run in DIR.")
@click.option("--plot", type=click.Path(path_type=Path), help="Draw the loss and held-out curves (.png, .svg, .pdf).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@friendly_errors()
def train(tasks, model, from_scratch, tokenizer, output, stages, steps, recipe, eval_tasks, scoring, delete_cost,
          seed, outtype, work, resume, plot, force):
    """Teach a model to delete: supervised on engine states, on its own mistakes, then GRPO.

    TASKS is JSONL of {"prompt" or "messages", "answer"}, as backspace eval reads. Writes OUT.gguf and,
    beside it, the held-out A/B (OUT.gguf.eval.json).
    """
    from rich.console import Console

    from backspace_convert.errors import missing_extra

    try:
        from ..train.command import prepare_job, run_train
    except ImportError as error:
        raise missing_extra(f"backspace train needs {error.name}", "train") from None
    overrides = {"seed": seed, "delete_cost": delete_cost, **_pairs(steps, "--steps")}
    if stages is not None:
        overrides["stages"] = [stage.strip() for stage in stages.split(",") if stage.strip()]
    options = {"model": model, "from_scratch": from_scratch, "tokenizer": tokenizer, "eval_tasks": eval_tasks,
               "scoring": scoring, "outtype": outtype, "work": work}
    job, chosen = prepare_job(tasks, output, resume, options, recipe, overrides)
    console = Console(stderr=True)
    status = run_train(job, chosen, force=force, plot=plot, say=lambda line: console.print(line, markup=False, highlight=False),
                       show=console.print)
    if status:
        raise SystemExit(INTERRUPTED_STATUS)
