"""A client that leaves while its long prompt is decoded (SmolLM2, over HTTP): the server stops the decode
between two batches, and keeps the batches decoded, so that the same prompt next decodes only the rest."""
import json
import time

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from backspace_cli import defaults  # noqa: E402
from serve_client import running_server  # noqa: E402
from test_serve_lifecycle import health, idle  # noqa: E402

pytestmark = pytest.mark.smollm2

COMPLETIONS = "/v1/completions"
# 1,101 tokens: three decode batches, the first of which takes far longer than the server takes to see a
# client leave; the prompt less its last token, which a whole decode would leave for the next, is no
# whole number of batches.
PROMPT = "The quick brown fox jumps over the lazy dog. " * 110
BATCH_S = 60  # one batch of it, on a busy machine


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + BATCH_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {BATCH_S} s: {what}"
        time.sleep(0.05)


def test_a_client_that_leaves_during_its_prompts_decode_stops_it_between_batches(smollm2_path):
    with running_server("-m", str(smollm2_path)) as server:
        leaving = server.connection()
        leaving.request("POST", COMPLETIONS, body=json.dumps({"prompt": PROMPT, "stream": True}).encode(),
                        headers={"Content-Type": "application/json"})
        wait_for(lambda: health(server)["busy"], "the long prompt is taken up")
        leaving.close()  # before any of its reply: the prompt is still being decoded
        wait_for(lambda: idle(server), "the engine is free again")

        status, _, body = server.post(COMPLETIONS, {"prompt": PROMPT, "max_tokens": 1})
        assert status == 200
        usage = body["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        # What the client that left had decoded: whole batches, short of the prompt.
        assert cached % defaults.BATCH_SIZE == 0 and cached < usage["prompt_tokens"] - 1
