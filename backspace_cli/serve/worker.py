"""The model's one worker: a thread that runs requests one at a time, from a bounded queue."""
import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field, replace

from backspace_convert.errors import UserError

from .. import defaults
from ..engine.chat_template import ChatTemplate
from ..engine.engine import PromptTooLong
from ..engine.events import Done
from ..engine.prompt import prompt_tokens
from ..engine.session import Session, token_biases
from ..engine.stopping import Stop, Stopped
from .errors import FAILED, ApiError
from .reply import ReplyStream, Step
from .requests import ApiRequest

log = logging.getLogger("backspace.serve")

GONE = None  # the last item of a job that was never run: its client had left


@dataclass
class Job:
    """One request on its way through the worker; its items are Steps, then a Done Step, an ApiError or GONE."""

    request: ApiRequest
    loop: asyncio.AbstractEventLoop
    items: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)  # its client has left

    def send(self, item: Step | ApiError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the event loop has closed: nobody is waiting
            pass


class Worker:
    """Owns the session: requests change its settings for one reply each, so nothing else may touch it.
    The engine keeps its cache between replies, so a request that shares a prefix with the last one
    (a chat's next turn) decodes only what is new."""

    def __init__(self, session: Session, queue_size: int = defaults.SERVE_QUEUE) -> None:
        self.session = session
        self.settings = session.settings  # the server's own: its command line, else the model's, else defaults
        self.logit_bias = session.logit_bias
        self.template = ChatTemplate(session.model)
        self._slots = threading.BoundedSemaphore(queue_size + 1)  # the waiting, and the one running
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backspace-worker", daemon=True)
        self.running: Job | None = None

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: ApiRequest) -> Job:
        """Queue a request (called on the event loop); a full queue is a 503 that says when to retry."""
        if self._stopping.is_set():
            raise _shutting_down()
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, "the server is busy: too many requests are waiting for the model; retry later",
                           code="queue_full", headers={"Retry-After": str(defaults.SERVE_RETRY_AFTER_S)})
        job = Job(request, asyncio.get_running_loop())
        self._jobs.put(job)
        return job

    def stop(self) -> None:
        """End the running reply at its next token, and refuse what waits (on SIGINT or SIGTERM)."""
        self._stopping.set()

    def close(self) -> None:
        self.stop()
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if job.cancelled.is_set():
                    job.send(GONE)
                elif self._stopping.is_set():
                    job.send(_shutting_down())
                else:
                    self.running = job
                    self._serve(job)
            except Stopped:  # while its prompt was tokenized
                job.send(GONE if job.cancelled.is_set() else _shutting_down())
            except ApiError as error:
                job.send(error)
            except PromptTooLong as error:
                job.send(ApiError(400, str(error), param="messages" if job.request.chat else "prompt",
                                  code="context_length_exceeded"))
            except UserError as error:
                job.send(ApiError(400, str(error)))
            except Exception:
                log.exception("a request failed")
                job.send(ApiError(500, FAILED))
            finally:
                self.running = None
                self._slots.release()

    def _serve(self, job: Job) -> None:
        def unwanted() -> bool:  # its client has left, or the server is stopping
            return job.cancelled.is_set() or self._stopping.is_set()

        session, request = self.session, job.request
        session.settings = replace(self.settings, **request.settings)
        session.logit_bias = self._biases(request.logit_bias)
        # Tokenizing and decoding a long prompt take seconds: both ask `unwanted` between their steps.
        tokens = self._tokens(request, unwanted)
        room = session.model.n_ctx - len(tokens)
        asked = request.settings.get("max_tokens")
        if asked is not None and asked > room:
            raise ApiError(400, f"max_tokens is {asked}, but the prompt's {len(tokens)} tokens leave {room} "
                           f"of the context's {session.model.n_ctx}", param="max_tokens",
                           code="context_length_exceeded")
        reply = ReplyStream(session.rewind_window, request.stop)
        events = session.generate(tokens, unwanted)
        for event in events:
            if isinstance(event, Done):
                job.send(reply.finish(event))
                return
            for step in reply.feed(event):
                job.send(step)
            if reply.stopped or unwanted():
                done = events.throw(KeyboardInterrupt())  # the engine's way to end a reply early
                events.close()
                job.send(reply.finish(done))
                return

    def _tokens(self, request: ApiRequest, stop: Stop) -> list[int]:
        tokens = prompt_tokens(self.session.model, request.prompt, self.template, stop)
        if not tokens:
            raise ApiError(400, "the prompt is empty", param="prompt", code="invalid_value")
        return tokens

    def _biases(self, requested: list[tuple[str, float]]) -> dict[int, float]:
        """The server's --logit-bias, plus the request's."""
        try:
            return token_biases(self.session.model, requested, "logit_bias", base=self.logit_bias)
        except UserError as error:
            raise ApiError(400, str(error), param="logit_bias", code="invalid_value") from None


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", code="shutting_down")
