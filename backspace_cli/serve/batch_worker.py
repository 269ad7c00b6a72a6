"""The server's worker for --parallel N: up to N replies stepped together through the batch engine, each new
request joining at the next step (continuous batching)."""
import queue

from ..engine.batch import BatchEngine, BatchRequest
from ..engine.events import Done, Event
from ..engine.session import Session
from ..engine.stopping import Stop
from .errors import ApiError
from .reply import Step
from .worker import Job, Prepared, Worker


class Arrivals:
    """The queue as the batch engine reads it: the next request ready to join, or an end while none waits (the
    engine asks again at its next step). It keeps each request it gave, by its index in the run."""

    def __init__(self, worker: "BatchWorker", first: Job, jobs: queue.SimpleQueue) -> None:
        self.worker, self._jobs = worker, jobs
        self.given: list[Prepared] = []
        self.closed = False  # the worker's close came through the queue
        self._first: Job | None = first

    def __iter__(self) -> "Arrivals":
        return self

    def __next__(self) -> BatchRequest:
        while not self.closed:
            job, self._first = self._first, None
            if job is None:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.closed = True
                    break
            prepared = self.worker.take(job)
            if prepared is not None:
                self.given.append(prepared)
                return BatchRequest(prepared.tokens, stop=self.worker.stop_for(prepared),
                                    **prepared.session.reply_options())
        raise StopIteration


class BatchWorker(Worker):
    """Runs up to `parallel` replies at once, each on a sequence of its own with a context as large as one
    reply alone would have. A sequence starts each reply empty: no prefix is reused between replies."""

    def __init__(self, session: Session, queue_size: int, parallel: int) -> None:
        self.batch = BatchEngine(session.model, parallel)
        self.notice = self.batch.notice
        super().__init__(session, queue_size, self.batch.parallel)

    def take(self, job: Job) -> Prepared | None:
        prepared = self._prepare(job)
        if prepared is not None:
            self.running += 1
        return prepared

    def stop_for(self, prepared: Prepared) -> Stop:
        """Its reply ends at its next decode once its client has left, the server stops, or a stop string came."""
        job, reply, stopping = prepared.job, prepared.reply, self._stopping
        return lambda: reply.stopped or job.unwanted(stopping)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            arrivals = Arrivals(self, job, self._jobs)
            ended: set[int] = set()
            try:
                for index, event in self.batch.run(arrivals):
                    if self._deliver(arrivals.given[index], event):
                        ended.add(index)
            except Exception as error:  # the batch failed: every reply in it ends with the error
                for index, prepared in enumerate(arrivals.given):
                    if index not in ended:
                        self._close_reply(prepared, self._failure(prepared.job, error))
            if arrivals.closed:
                return

    def _deliver(self, prepared: Prepared, event: Event) -> bool:
        """Send the steps of one event of a reply; whether it was the last."""
        reply = prepared.reply
        if isinstance(event, Done):
            self._close_reply(prepared, reply.finish(event))
            return True
        if not reply.stopped:  # past a stop string only its Done is wanted
            for step in reply.feed(event):
                prepared.job.send(step)
        return False

    def _close_reply(self, prepared: Prepared, last: Step | ApiError | None) -> None:
        self.running -= 1
        self._end(prepared.job, last)
