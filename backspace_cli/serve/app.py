"""The ASGI app: the OpenAI routes, the page, who may call them, and a JSON error for every refusal."""
import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib.resources import files

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..engine.events import Done
from ..introduction import Introduction
from ..render.renderers import TOOK_BACK
from .access import ANY, Access, AccessGuard, authorize
from .errors import FAILED, ApiError
from .requests import parse_json, parse_request
from .responses import Shapes, models
from .uploads import Uploads
from .worker import Job, Worker

PAGE = ("backspace_cli.serve", "page")
# The page runs its own script and style only, and never anything a reply could smuggle in.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff"}


def _sse(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


class JobResponse:
    """Waits for a job's items and sends them, whole as JSON or as server-sent events. A client that
    leaves cancels its job at once, queued or running; the job's last item always comes, so this ends."""

    def __init__(self, job: Job, shapes: Shapes) -> None:
        self.job, self.shapes = job, shapes

    async def __call__(self, scope, receive, send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        try:
            first = await self.job.items.get()
            if first is None:
                return
            if isinstance(first, ApiError):
                await first.response()(scope, receive, send)
            elif self.job.request.stream:
                await self._stream(first, send)
            else:
                await self._whole(first, scope, receive, send)
        finally:
            watcher.cancel()
            self.job.cancelled.set()  # a no-op once the job is done: it is only read while the job runs

    async def _watch(self, receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.job.cancelled.set()

    async def _items(self, first):
        """Steps up to and including the Done one, or up to an ApiError (GONE comes only first)."""
        item = first
        while True:
            yield item
            if isinstance(item, ApiError) or isinstance(item.event, Done):
                return
            item = await self.job.items.get()

    async def _whole(self, first, scope, receive, send) -> None:
        async for item in self._items(first):
            if isinstance(item, ApiError):
                await item.response()(scope, receive, send)
            elif isinstance(item.event, Done):
                await JSONResponse(self.shapes.whole(item.event))(scope, receive, send)

    async def _stream(self, first, send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def chunk(data) -> None:
            await send({"type": "http.response.body", "body": _sse(data), "more_body": True})

        shapes, edits = self.shapes, self.job.request.edit_stream
        if shapes.chat:
            await chunk(shapes.start())
        async for item in self._items(first):
            if isinstance(item, ApiError):  # a failure after the stream began: OpenAI's error, as an event
                await chunk(item.body())
            elif isinstance(item.event, Done):
                if item.content:
                    await chunk(shapes.chunk(item.content))
                await chunk(shapes.last(item.event))
                if self.job.request.include_usage:
                    await chunk(shapes.usage_chunk(item.event))
            elif item.content or edits:
                await chunk(shapes.chunk(item.content, item.event if edits else None))
        await send({"type": "http.response.body", "body": _sse("[DONE]"), "more_body": False})


def make_app(worker: Worker, model: str, access: Access, uploads: Uploads, api_key: str | None = None) -> Starlette:
    created = int(time.time())
    # What the page shows beside its chat: the model's name and its own introduction, and the note's wording.
    about_page = {"model": model, **asdict(Introduction.of(worker.session.model.metadata)), "took_back": TOOK_BACK}

    async def generation(request: Request, chat: bool) -> JobResponse:
        authorize(request, api_key)
        body = parse_request(parse_json(await uploads.read(request)), chat)
        return JobResponse(worker.submit(body), Shapes(chat, model))

    async def chat_completions(request: Request) -> JobResponse:
        return await generation(request, chat=True)

    async def completions(request: Request) -> JobResponse:
        return await generation(request, chat=False)

    async def list_models(request: Request) -> JSONResponse:
        authorize(request, api_key)
        return JSONResponse(models(model, created))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "model": model, "busy": worker.running > 0,
                             "waiting": worker.waiting})

    async def page(request: Request) -> FileResponse:
        return FileResponse(str(files(PAGE[0]).joinpath(PAGE[1], "index.html")), headers=PAGE_HEADERS)

    async def about(request: Request) -> JSONResponse:
        return JSONResponse(about_page)

    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return ApiError(error.status_code, message.get(error.status_code, str(error.detail))).response()

    async def server_error(request: Request, error: Exception) -> JSONResponse:
        return ApiError(500, FAILED).response()

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.close)

    middleware = [Middleware(AccessGuard, access=access)]
    if access.origins:  # so that the pages of the origins allowed can read the replies too
        middleware.append(Middleware(CORSMiddleware, allow_origins=["*"] if ANY in access.origins else
                                     sorted(access.origins), allow_methods=["GET", "POST"],
                                     allow_headers=["Authorization", "Content-Type"]))
    return Starlette(
        middleware=middleware,
        routes=[
            Route("/", page),
            Route("/page/about", about),
            Mount("/page", StaticFiles(packages=[PAGE]), name="page"),
            Route("/health", health),
            Route("/v1/models", list_models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
