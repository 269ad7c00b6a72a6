"""Runs the server: the model loaded first, then uvicorn, until SIGINT or SIGTERM ends it cleanly."""
import contextlib
import signal
import sys
from pathlib import Path

import uvicorn

from .. import defaults
from ..engine.session import Session
from ..settings import Settings
from .access import Access, check_api_key
from .app import make_app
from .batch_worker import BatchWorker
from .protocol import JsonH11Protocol
from .uploads import Uploads
from .worker import Worker

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server(uvicorn.Server):
    """uvicorn's, which on a signal first ends the reply being written, refuses the queue and drops the
    uploads still arriving, so that open connections close at once, and which then exits with status 0
    rather than re-raising the signal."""

    def __init__(self, config: uvicorn.Config, worker: Worker, uploads: Uploads, banner: str) -> None:
        super().__init__(config)
        self.worker, self.uploads, self.banner = worker, uploads, banner

    def handle_exit(self, sig, frame) -> None:
        self.worker.stop()
        self.uploads.stop()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)  # exits with status 1 when the port cannot be bound
        print(self.banner, file=sys.stderr, flush=True)


def serve(settings: Settings, host: str = defaults.SERVE_HOST, port: int = defaults.SERVE_PORT,
          api_key: str | None = None, queue_size: int = defaults.SERVE_QUEUE, allow_hosts: tuple[str, ...] = (),
          allow_origins: tuple[str, ...] = (), upload_seconds: float = defaults.SERVE_UPLOAD_SECONDS,
          parallel: int = defaults.SERVE_PARALLEL) -> None:
    check_api_key(api_key)
    session = Session(settings)  # a bad model is a one-line error before anything listens
    model = Path(session.model.path).stem
    worker = BatchWorker(session, queue_size, parallel) if parallel > 1 else Worker(session, queue_size)
    if worker.notice:
        print(f"backspace serve: {worker.notice}", file=sys.stderr, flush=True)
    uploads = Uploads(seconds=upload_seconds)
    app = make_app(worker, model, Access(host, allow_hosts, allow_origins), uploads, api_key)
    config = uvicorn.Config(app, host=host, port=port, http=JsonH11Protocol, log_level="warning", access_log=False,
                            lifespan="on")
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    banner = f"backspace serve: {model} at {url}/ (the page), {url}/v1 (the OpenAI API); Ctrl-C stops"
    Server(config, worker, uploads, banner).run()
    print("backspace serve: stopped", file=sys.stderr, flush=True)
