"""`backspace serve`: click wiring for the OpenAI-compatible server (backspace_cli.serve does the work)."""
import click

from backspace_convert.errors import missing_extra

from .. import defaults
from .friendly import friendly_errors
from .options import CONTEXT_SETTINGS, engine_options, settings_from


def _listed(context, parameter, values) -> tuple[str, ...]:
    """A repeatable option's values, each of which may itself be a comma-separated list."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


@click.command(context_settings=CONTEXT_SETTINGS)
@engine_options
@click.option("--host", default=defaults.SERVE_HOST, show_default=True,
              help="The address to listen on; 0.0.0.0 lets other machines in.")
@click.option("--port", type=click.IntRange(0, 65535), default=defaults.SERVE_PORT, show_default=True,
              help="The port to listen on.")
@click.option("--api-key", envvar="BACKSPACE_API_KEY",
              help="Require 'Authorization: Bearer KEY' on the API routes [env: BACKSPACE_API_KEY].")
@click.option("--queue-size", type=click.IntRange(min=0), default=defaults.SERVE_QUEUE, show_default=True,
              help="Requests that may wait for the model; past them, 503 with Retry-After.")
@click.option("--parallel", type=click.IntRange(min=1), default=defaults.SERVE_PARALLEL, show_default=True,
              metavar="N", help="Replies generated at once, stepped together in one batch; a new request joins at the"
                                " next step. Each reply gets a context of its own as large as -c, and starts it empty"
                                " (1 reuses the last reply's cached prefix).")
@click.option("--allow-host", multiple=True, callback=_listed, envvar="BACKSPACE_ALLOW_HOSTS", metavar="NAME",
              help="Also answer requests whose Host header names NAME ('*': any); repeatable, or comma-separated"
                   " [env: BACKSPACE_ALLOW_HOSTS].")
@click.option("--allow-origin", multiple=True, callback=_listed, envvar="BACKSPACE_ALLOW_ORIGINS", metavar="ORIGIN",
              help="Also answer browser requests from pages at ORIGIN, e.g. http://localhost:3000 ('*': any);"
                   " repeatable, or comma-separated [env: BACKSPACE_ALLOW_ORIGINS].")
@click.option("--upload-timeout", type=click.FloatRange(min=0, min_open=True), default=defaults.SERVE_UPLOAD_SECONDS,
              show_default=True, metavar="SECONDS", help="A request body not all there by then is dropped.")
@friendly_errors()
def serve(host, port, api_key, queue_size, parallel, allow_host, allow_origin, upload_timeout, **options):
    """Serve the model over the OpenAI API, with a chat page at / that shows the live edit stream.

    Without -m, the built-in model. Request fields take the options below as their defaults.
    """
    try:
        from ..serve.server import serve as run_server
    except ImportError as error:
        raise missing_extra(f"the server needs starlette and uvicorn ({error})", "serve") from None
    run_server(settings_from(options), host=host, port=port, api_key=api_key or None, queue_size=queue_size,
               allow_hosts=allow_host, allow_origins=allow_origin, upload_seconds=upload_timeout, parallel=parallel)
