"""`backspace convert` and `backspace inspect`: click wiring only; the work happens in backspace_convert.

Registered in cli.py with `main.add_command(convert)` and `main.add_command(inspect)`. Module-level
imports stay cheap (no gguf, numpy or llama_cpp) so that `backspace --help` answers at once.
"""
from functools import partial
from pathlib import Path

import click

from backspace_convert import defaults, hf_checkpoint, keys
from backspace_convert.errors import UserError

from .friendly import friendly_errors
from .options import CONTEXT_SETTINGS


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Where to write the converted model [default: MODEL.backspace.gguf next to MODEL].")
@click.option("--outtype", type=click.Choice(hf_checkpoint.OUTTYPES), metavar="|".join(hf_checkpoint.OUTTYPES),
              help=f"A checkpoint folder's tensor type [default: {defaults.OUTTYPE}: bf16 if saved so, else f16].")
@click.option("--mode", type=click.Choice(keys.MODES), default="auto", show_default=True,
              help="auto marks the token if the vocabulary has it, reuses with --reuse, else appends.")
@click.option("--token", "token", default=keys.DELETE_TOKEN_TEXT, show_default=True, metavar="TEXT",
              help="The delete token's text.")
@click.option("--reuse", metavar="TOKEN",
              help="Reuse mode: rename this reserved or unused token (an id or its text) to the delete token.")
@click.option("--rows", type=click.Path(path_type=Path), metavar="FILE",
              help="Append mode: trained rows from the fine-tune (.npy or .safetensors).")
@click.option("--init", metavar="mean|zero|copy:TOKEN",
              help=f"Append mode without --rows: how the new rows start [default: {defaults.INIT}].")
@click.option("--marker", metavar="TEXT",
              help='Marker mode: the plain text the model writes to delete, e.g. "[DELETE]".')
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--check", is_flag=True,
              help="Also run both models in llama.cpp and require bit-identical logits for every original token.")
@friendly_errors("interrupted: nothing was written", writes_files=True)
def convert(model, output, outtype, mode, token, reuse, rows, init, marker, force, check):
    """Make MODEL (a GGUF file, or a Hugging Face checkpoint folder) a backspace model: give it a delete token.

    For a GGUF, the mode is chosen automatically and reported: mark (the token is already in the
    vocabulary), reuse (--reuse: rename a reserved token), append (add a token and one row to the
    embeddings), or marker (--marker: the model writes plain text to delete). A checkpoint folder (what
    save_pretrained writes) is converted to GGUF with llama.cpp's convert_hf_to_gguf.py, fetched once,
    and its tokenizer's delete token is marked. The input is never modified.
    """
    from backspace_convert.convert import convert_file
    from backspace_convert.plan import ConvertSpec
    from backspace_convert.progress import copy_progress

    if model.is_dir():
        # A folder's tokenizer has the delete token, which is marked: no tensor of llama.cpp's conversion changes.
        gguf_only = {"--mode": mode not in ("auto", "mark"), "--reuse": reuse, "--rows": rows, "--init": init,
                     "--marker": marker, "--check": check}
        for option, given in gguf_only.items():
            if given:
                raise UserError(f"{option} is for a GGUF file, not a checkpoint folder (whose tokenizer's delete "
                                "token is marked)")
        written = hf_checkpoint.convert_checkpoint(model, output, outtype=outtype or defaults.OUTTYPE, token=token,
                                                   force=force, report=partial(click.echo, err=True))
        size = f" ({written.stat().st_size / 1e6:,.1f} MB, structure checked)" if written.is_file() else ""
        click.echo(f"wrote {written}{size}", err=not written.is_file())
        return
    if outtype is not None:
        raise UserError("--outtype is for a checkpoint folder: a GGUF file keeps its tensor types")
    spec = ConvertSpec(mode=mode, token=token, reuse=reuse, rows=rows, init=init, marker=marker)
    check_logits = None
    if check:  # only --check needs llama.cpp
        from ..engine.logits_check import check_logits
    with copy_progress() as progress:
        result = convert_file(model, output, spec, force=force, check=check_logits, progress=progress)
    for warning in result.edit.warnings:
        click.echo(f"warning: {warning}", err=True)
    if result.output is None:
        click.echo(result.edit.summary)
        return
    # A device or a FIFO (-o /dev/stdout) takes the model itself: the status goes to stderr, and it has no size.
    regular = result.output.is_file()
    status = partial(click.echo, err=not regular)
    status(f"mode: {result.mode}")
    status(result.edit.summary)
    seconds = sum(result.timings.values())
    size = f"{result.output.stat().st_size / 1e6:,.1f} MB, " if regular else ""
    status(f"wrote {result.output} ({size}structure checked) in {seconds:.1f} s")
    if result.check_result is not None:
        status(f"--check: logits bit-identical for all {result.check_result.tokens:,} original tokens")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as JSON.")
@friendly_errors("interrupted: nothing was written")
def inspect(model, as_json):
    """Show what matters about MODEL (a GGUF file) for backspace: its delete token and reusable tokens."""
    from backspace_convert.inspection import inspect_model, render

    info = inspect_model(model)
    if as_json:
        import json

        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    Console().print(render(info))
