"""The model's worker: a thread that runs requests from a bounded queue, here one at a time, each with its own
settings."""
import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field, replace

from backspace_convert.errors import UserError

from .. import defaults
from ..engine.chat_template import ChatTemplate
from ..engine.engine import PromptTooLong, check_prompt
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

    def unwanted(self, stopping: threading.Event) -> bool:
        return self.cancelled.is_set() or stopping.is_set()

    def send(self, item: Step | ApiError | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the event loop has closed: nobody is waiting
            pass


@dataclass
class Prepared:
    """A job made ready for the engine: its prompt's tokens, and the session with its own settings."""

    job: Job
    session: Session
    tokens: list[int]
    reply: ReplyStream


class Worker:
    """Runs one reply at a time. The engine keeps its cache between replies, so a request that shares a
    prefix with the last one (a chat's next turn) decodes only what is new."""

    notice: str | None = None  # what the server says at its start about how its replies run

    def __init__(self, session: Session, queue_size: int = defaults.SERVE_QUEUE, parallel: int = 1) -> None:
        self.session = session
        self.settings = session.settings  # the server's own: its command line, else the model's, else defaults
        self.logit_bias = session.logit_bias
        self.template = ChatTemplate(session.model)
        self._slots = threading.BoundedSemaphore(queue_size + parallel)  # the waiting, and those running
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backspace-worker", daemon=True)
        self.running = 0  # replies being generated

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
        """End the running replies at their next token, and refuse what waits (on SIGINT or SIGTERM)."""
        self._stopping.set()

    def close(self) -> None:
        self.stop()
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            prepared = self._prepare(job)
            if prepared is None:
                continue
            self.running = 1
            try:
                last = self._reply_alone(prepared)
            except Exception as error:
                last = self._failure(job, error)
            self.running = 0
            self._end(job, last)

    def _reply_alone(self, prepared: Prepared) -> Step:
        """Send the reply's steps as they come; its last one, with its Done."""
        job, reply = prepared.job, prepared.reply
        events = prepared.session.generate(prepared.tokens, lambda: job.unwanted(self._stopping))
        for event in events:
            if isinstance(event, Done):
                return reply.finish(event)
            for step in reply.feed(event):
                job.send(step)
            if reply.stopped or job.unwanted(self._stopping):
                done = events.throw(KeyboardInterrupt())  # the engine's way to end a reply early
                events.close()
                return reply.finish(done)
        raise AssertionError("the engine ended a reply without Done")

    def _prepare(self, job: Job) -> Prepared | None:
        """The job ready for the engine; None once it is answered instead (its client left, the server is
        stopping, or the request is refused)."""
        try:
            if job.cancelled.is_set():
                raise Stopped()
            if self._stopping.is_set():
                raise _shutting_down()
            request = job.request
            session = self.session.for_reply(replace(self.settings, **request.settings),
                                             self._biases(request.logit_bias))
            # Tokenizing a long prompt takes seconds: it asks between its steps whether it is still wanted.
            tokens = self._tokens(request, lambda: job.unwanted(self._stopping))
            n_ctx = session.model.n_ctx
            check_prompt(tokens, n_ctx)
            room, asked = n_ctx - len(tokens), request.settings.get("max_tokens")
            if asked is not None and asked > room:
                raise ApiError(400, f"max_tokens is {asked}, but the prompt's {len(tokens)} tokens leave {room} "
                               f"of the context's {n_ctx}", param="max_tokens", code="context_length_exceeded")
            return Prepared(job, session, tokens, ReplyStream(session.rewind_window, request.stop))
        except Exception as error:
            self._end(job, self._failure(job, error))
            return None

    def _failure(self, job: Job, error: Exception) -> ApiError | None:
        """What a job's client gets for `error` (called in its except block): GONE when it has left."""
        if isinstance(error, Stopped):  # while its prompt was tokenized or decoded
            return GONE if job.cancelled.is_set() else _shutting_down()
        if isinstance(error, ApiError):
            return error
        if isinstance(error, PromptTooLong):
            return ApiError(400, str(error), param="messages" if job.request.chat else "prompt",
                            code="context_length_exceeded")
        if isinstance(error, UserError):
            return ApiError(400, str(error))
        log.exception("a request failed")
        return ApiError(500, FAILED)

    def _end(self, job: Job, last: Step | ApiError | None) -> None:
        job.send(last)
        self._slots.release()

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
