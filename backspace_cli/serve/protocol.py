"""uvicorn's HTTP/1.1 protocol, whose refusal of bytes that are not HTTP is OpenAI's JSON error like every other."""
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import ApiError

NOT_HTTP = ApiError(400, "the request is not valid HTTP/1.1", code="invalid_http")


class JsonH11Protocol(H11Protocol):
    """uvicorn answers such bytes itself, in plain text; this answers in JSON. Bad framing can come after a
    request's headers, while the app already runs for it: the app is then told that its client has gone,
    as uvicorn tells it when a connection drops, so that it never writes to the closed connection."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(NOT_HTTP.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            for event in h11.Response(status_code=400, headers=headers), h11.Data(data=body), h11.EndOfMessage():
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # the app's response has begun, or a HEAD answer takes no body
            pass
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()
