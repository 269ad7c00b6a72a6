"""Request bodies that never arrive whole: a client that leaves mid-upload costs nothing, one that stalls is
dropped at the upload deadline in one log line, and neither keeps a signal from stopping the server."""
import json
import signal
import socket

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from serve_client import running_server  # noqa: E402

CHAT = "/v1/chat/completions"
QUESTION = {"messages": [{"role": "user", "content": "What is 12+7?"}], "max_tokens": 2}
WITHIN_S = 30  # "at once", on a busy machine


def half_upload(server, declared: int = 1000) -> socket.socket:
    """A connection that has sent its headers and half of the body they declare, and then waits."""
    client = socket.create_connection((server.host, server.port), timeout=WITHIN_S)
    client.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {declared}\r\n\r\n".encode() + b'{"messages": ' + b" " * (declared // 2))
    return client


def everything(client: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def test_clients_that_leave_mid_upload_leave_nothing_in_the_log():
    with running_server() as server:
        for _ in range(3):
            half_upload(server).close()
        status, _, body = server.post(CHAT, QUESTION)
        assert status == 200 and body["choices"][0]["message"]["content"] is not None
        log = server.output()
        assert "Traceback" not in log and "Disconnect" not in log, log


def test_a_stalled_upload_is_dropped_at_the_deadline_in_one_log_line():
    with running_server("--upload-timeout", "0.5") as server:
        client = half_upload(server)
        try:
            head, _, body = everything(client).partition(b"\r\n\r\n")
        finally:
            client.close()
        assert head.startswith(b"HTTP/1.1 408 ") and json.loads(body)["error"]["code"] == "upload_timeout"
        assert server.post(CHAT, QUESTION)[0] == 200
        banner, *rest = server.output().strip().splitlines()
        assert len(rest) == 1 and "dropped" in rest[0], server.output()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stalled_upload_does_not_keep_a_signal_from_stopping_the_server(sig):
    with running_server() as server:
        client = half_upload(server)
        try:
            assert server.request("GET", "/health")[0] == 200  # the stalled one is in, and the server still answers
            server.process.send_signal(sig)
            assert server.process.wait(timeout=WITHIN_S) == 0
            answer = everything(client)
        finally:
            client.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 ")
        log = server.output()
        assert "backspace serve: stopped" in log and "Traceback" not in log and "Error" not in log, log
