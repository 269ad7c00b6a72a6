"""The `backspace` command line: click wiring only; the work happens in the library modules."""
import sys
from pathlib import Path

import click

from .. import __version__
from ..engine.events import INTERRUPTED
from .convert import convert, inspect
from .data import eval_command, synth
from .friendly import friendly_errors
from .options import CONTEXT_SETTINGS, engine_options, settings_from
from .serve import serve
from .train import train
from .signals import INTERRUPTED_STATUS


class OneLineUsageErrors(click.Group):
    """A bad command line (an unknown option, a value out of range, a directory where a file goes) is one
    line, as every other error is, in place of click's usage block: -h shows the usage."""

    def parse_args(self, ctx, args):
        if not args:  # `backspace` alone: click answers with the help
            return super().parse_args(ctx, args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            raise click.UsageError(error.format_message()) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise click.UsageError(error.format_message()) from None


@click.group(cls=OneLineUsageErrors, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="backspace")
def main():
    """backspace: language models with a delete key.

    A delete-aware model emits a delete token when it notices that its last token was wrong; the
    engine takes that token back, its KV-cache slot included, and the model tries again.
    """


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("prompt", required=False)
@engine_options
@click.option("--format", "output_format", type=click.Choice(["live", "plain", "jsonl"]),
              help="live on a terminal, plain in a pipe (the default), or one JSON object per event.")
@click.option("--trace", is_flag=True, help="Keep deleted text visible, struck through.")
@friendly_errors()
def complete(prompt, output_format, trace, **options):
    """Continue PROMPT (and/or text piped on stdin) as raw text."""
    from .complete import run_complete
    from ..render.renderers import default_format
    from .prompt import read_prompt

    settings = settings_from(options)
    done = run_complete(settings, read_prompt(prompt), output_format or default_format(), trace)
    if done.finish_reason == INTERRUPTED:
        raise SystemExit(INTERRUPTED_STATUS)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("message", required=False)
@engine_options
@click.option("--system", help="The system prompt (default: the model's own).")
@click.option("--format", "output_format", type=click.Choice(["live", "plain", "jsonl"]),
              help="For one-shot answers: live on a terminal, plain in a pipe (the default), or JSONL.")
@click.option("--trace", is_flag=True, help="Keep deleted text visible, struck through.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="FILE",
              help="Go on with the conversation in a transcript written by /save or by a chat that llama.cpp ended.")
@friendly_errors()
def chat(message, system, output_format, trace, resume, **options):
    """Chat with the model in the terminal.

    With MESSAGE, or a message piped on stdin, answer once and exit.
    """
    from ..render.renderers import default_format

    settings = settings_from(options)
    if message is None and sys.stdin is not None and sys.stdin.isatty():
        from ..chat.repl import run_chat

        run_chat(settings, system, trace, resume)
        return
    from ..chat.repl import run_once
    from .prompt import read_prompt

    done = run_once(settings, system, read_prompt(message), output_format or default_format(), trace, resume)
    if done.finish_reason == INTERRUPTED:
        raise SystemExit(INTERRUPTED_STATUS)


@main.command(context_settings=CONTEXT_SETTINGS)
def info():
    """Show llama.cpp's build: backends, GPU offload support and threads."""
    from ..engine.system_info import system_info

    for key, value in system_info().items():
        click.echo(f"{key}: {value}")


main.add_command(convert)
main.add_command(inspect)
main.add_command(synth)
main.add_command(eval_command)
main.add_command(serve)
main.add_command(train)
