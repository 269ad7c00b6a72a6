"""Request bodies as the server reads them: under a size limit and a deadline, and refused once it stops."""
import asyncio
import logging

from starlette.requests import Request

from .. import defaults
from .errors import ApiError

log = logging.getLogger("backspace.serve")

CLOSE = {"Connection": "close"}  # the rest of that body is never read, so the connection cannot go on


class Uploads:
    """Reads request bodies. A client that stalls mid-body would hold its connection, and with it the
    server's shutdown, for ever: so a body has `seconds` to arrive, and none is waited for once the
    server stops. A client that leaves mid-body is no error of the server's: nothing is logged."""

    def __init__(self, limit: int = defaults.SERVE_MAX_BODY, seconds: float = defaults.SERVE_UPLOAD_SECONDS) -> None:
        self.limit, self.seconds = limit, seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Refuse every body still arriving; called from the signal handler, on the event loop's thread."""
        asyncio.get_running_loop().call_soon_threadsafe(self._stopping.set)

    async def read(self, request: Request) -> bytes:
        too_big = ApiError(413, f"the request body is over {self.limit} bytes", code="body_too_large", headers=CLOSE)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise too_big
        try:
            return await asyncio.wait_for(self._collect(request, too_big), self.seconds)
        except asyncio.TimeoutError:  # TimeoutError itself only from Python 3.11
            log.warning("backspace serve: dropped a client whose request body was not all there after %g s",
                        self.seconds)
            raise ApiError(408, f"the request body did not arrive within {self.seconds:g} s",
                           code="upload_timeout", headers=CLOSE) from None

    async def _collect(self, request: Request, too_big: ApiError) -> bytes:
        body = bytearray()
        while True:
            message = await self._next(request.receive)
            if message["type"] == "http.disconnect":
                raise ApiError(400, "the client left before its request body arrived", code="client_left")
            body += message.get("body", b"")
            if len(body) > self.limit:
                raise too_big
            if not message.get("more_body", False):
                return bytes(body)

    async def _next(self, receive) -> dict:
        """The next ASGI message from the client, unless the server stops first."""
        message = asyncio.ensure_future(receive())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((message, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            message.cancel()  # a no-op on whichever is done
            stopping.cancel()
        if message.done() and not message.cancelled():
            return message.result()
        raise ApiError(503, "the server is shutting down", code="shutting_down", headers=CLOSE)
