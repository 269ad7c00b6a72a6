"""`backspace serve`: click wiring for the OpenAI-compatible server (backspace_cli.serve does the work)."""
import click

from backspace_convert.errors import missing_extra

from .. import defaults
from .friendly import friendly_errors
from .options import engine_options, settings_from


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@engine_options
@click.option("--host", default=defaults.SERVE_HOST, show_default=True,
              help="The address to listen on; 0.0.0.0 lets other machines in.")
@click.option("--port", type=click.IntRange(0, 65535), default=defaults.SERVE_PORT, show_default=True,
              help="The port to listen on.")
@click.option("--api-key", envvar="BACKSPACE_API_KEY",
              help="Require 'Authorization: Bearer KEY' on the API routes [env: BACKSPACE_API_KEY].")
@click.option("--queue-size", type=click.IntRange(min=0), default=defaults.SERVE_QUEUE, show_default=True,
              help="Requests that may wait for the model; past them, 503 with Retry-After.")
@friendly_errors()
def serve(host, port, api_key, queue_size, **options):
    """Serve the model over the OpenAI API, with a chat page at / that shows the live edit stream.

    Without -m, the built-in model. Request fields take the options below as their defaults.
    """
    try:
        from ..serve.server import serve as run_server
    except ImportError as error:
        raise missing_extra(f"the server needs starlette and uvicorn ({error})", "serve") from None
    run_server(settings_from(options), host=host, port=port, api_key=api_key or None, queue_size=queue_size)
