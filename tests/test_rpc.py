"""--rpc: a model's layers on llama.cpp rpc-servers on 127.0.0.1 give the same replies, deletes and logits as
the same model run locally, and a server that is missing or dies gives one line and a non-zero exit."""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
from click.testing import CliRunner

import tiny_models
from backspace_cli.cli.main import main
from backspace_cli.engine.engine import DeleteRules, Engine
from backspace_cli.engine.events import Done
from backspace_cli.engine.llama_hooks import ABORT_STATUS
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sampling import make_sampler
from backspace_cli.engine.sequence import CacheSequence
import test_invariants
from test_invariants import PROMPT

ROOT = Path(__file__).resolve().parent.parent
SERVER_MEMORY = 2 << 30  # bytes of address space each rpc-server may take: a part of the machine
BACKSPACE = [sys.executable, "-m", "backspace_cli"]


@pytest.fixture(scope="session")
def rpc_server_binary() -> str:
    """make test builds it (scripts/build_llama_tool.sh, cached) and names it; else the script runs here."""
    named = os.environ.get("BACKSPACE_RPC_SERVER")
    if named:
        return named
    build = subprocess.run(["bash", str(ROOT / "scripts" / "build_llama_tool.sh"), "ggml-rpc-server"],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable})
    if build.returncode != 0:
        pytest.fail(f"building ggml-rpc-server failed:\n{build.stderr[-2000:]}")
    return build.stdout.strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SERVER_MEMORY, SERVER_MEMORY))


class RpcServer:
    """One ggml-rpc-server on 127.0.0.1, with a memory limit, started and always stopped by a fixture."""

    def __init__(self, binary: str) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_limit_memory)
        deadline = time.monotonic() + 30
        while True:  # a connection that says nothing is served, and closed, like any other client
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"ggml-rpc-server did not start on {self.endpoint}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextmanager
def servers(binary: str, count: int) -> Iterator[list[str]]:
    started = []
    try:
        for _ in range(count):
            started.append(RpcServer(binary))
        yield [server.endpoint for server in started]
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def two_servers(rpc_server_binary):
    """Two servers for remote_llama, which keeps them busy: an rpc-server serves one client at a time."""
    with servers(rpc_server_binary, 2) as endpoints:
        yield endpoints


@pytest.fixture
def one_server(rpc_server_binary):
    server = RpcServer(rpc_server_binary)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def remote_llama(tiny_llama_path, two_servers):
    """The tiny llama with its layers split over both servers; closed while they still run, since freeing
    a model's remote buffers is a message to its server."""
    model = load_model(tiny_llama_path, n_ctx=512, n_threads=1, rpc_servers=tuple(two_servers))
    yield model
    model.llama.close()


def _reply(model, seed: int) -> tuple[list, Done]:
    delete = model.find_token(tiny_models.DELETE)
    events = list(Engine(model).generate(
        model.tokenize(PROMPT, add_bos=True), sampler=make_sampler(1.0, 0, 1.0, 0.0, seed),
        max_tokens=60, rules=DeleteRules(token_id=delete, window=8, max_deletes=20)))
    return events[:-1], events[-1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_reply_with_deletes_through_rpc_is_the_local_reply(remote_llama, tiny_llama, seed):
    remote_events, remote_done = _reply(remote_llama, seed)
    local_events, local_done = _reply(tiny_llama, seed)
    assert remote_events == local_events  # the same tokens and deletes, in the same order
    assert (remote_done.text, remote_done.counts, remote_done.finish_reason) == \
           (local_done.text, local_done.counts, local_done.finish_reason)


def test_some_reply_through_rpc_deletes(remote_llama):
    assert any(_reply(remote_llama, seed)[1].counts.deletes for seed in (1, 2, 3))


def test_logits_through_rpc_are_bit_identical_to_local(remote_llama, tiny_llama):
    logits = []
    for model in (remote_llama, tiny_llama):
        sequence = CacheSequence(model, batch_size=64)
        sequence.feed(model.tokenize(PROMPT, add_bos=True))
        logits.append(sequence.feed([40, 41, 42]).copy())
    assert np.array_equal(*logits)


def test_deletes_through_rpc_leave_the_cache_as_if_the_tokens_were_never_fed(remote_llama, request):
    # The local models' property (random scripts of appends and deletes), on the model behind RPC.
    test_invariants.test_sequence_trim_leaves_the_cache_as_if_the_tokens_were_never_fed("remote_llama", request)


def test_the_layers_go_to_both_servers(tiny_llama_path, rpc_server_binary):
    with servers(rpc_server_binary, 2) as endpoints:
        result = subprocess.run([*BACKSPACE, "complete", "hi", "-m", str(tiny_llama_path), "-n", "3", "-v",
                                 "--rpc", ",".join(endpoints)], capture_output=True, text=True)
    assert result.returncode == 0
    for endpoint in endpoints:  # llama.cpp's own log names the buffers it put on each
        assert re.search(rf"RPC\d+\[{re.escape(endpoint)}\] model buffer size", result.stderr)


def test_a_model_loading_onto_servers_leaves_other_loads_local(tiny_llama_path, rpc_server_binary):
    """Another thread that loads a model meanwhile gets llama.cpp's defaults: no device list of ours."""
    loaded = threading.Event()
    seen = set()

    def watch() -> None:
        while not loaded.is_set():
            seen.add(llama_cpp.llama_cpp.llama_model_default_params().devices)

    with servers(rpc_server_binary, 1) as endpoints:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            model = load_model(tiny_llama_path, n_ctx=512, n_threads=1, rpc_servers=tuple(endpoints))
        finally:
            loaded.set()
            watcher.join()
        model.llama.close()
    assert seen == {None}


def test_an_unreachable_server_is_one_line(tiny_llama_path):
    port = _free_port()  # nothing listens there
    for command in (["complete", "hi"], ["chat", "hi"]):
        result = CliRunner().invoke(main, [*command, "-m", str(tiny_llama_path), "--rpc", f"127.0.0.1:{port}"])
        assert result.exit_code == 1
        assert result.stderr.strip() == f"Error: cannot reach RPC server 127.0.0.1:{port}: Connection refused"


def test_a_busy_server_is_one_line_not_a_hang(tiny_llama_path, remote_llama, two_servers):
    endpoint = two_servers[0]  # serving remote_llama: an rpc-server takes one client at a time
    result = CliRunner().invoke(main, ["complete", "hi", "-m", str(tiny_llama_path), "--rpc", endpoint])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: RPC server {endpoint} did not answer within")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_peer_that_is_not_an_rpc_server_is_one_line(tiny_llama_path):
    with socket.socket() as other:  # reads our hello and answers as some other service might
        other.bind(("127.0.0.1", 0))
        other.listen()
        endpoint = f"127.0.0.1:{other.getsockname()[1]}"

        def answer() -> None:
            connection, _ = other.accept()
            with connection:
                connection.recv(64)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        result = CliRunner().invoke(main, ["complete", "hi", "-m", str(tiny_llama_path), "--rpc", endpoint])
    assert result.exit_code == 1
    assert result.stderr.strip() == \
           f"Error: {endpoint} is not an rpc-server of this llama.cpp version (its handshake failed)"


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:", ":50052", "host:port", "127.0.0.1:70000",
                                   "127.0.0.1:50052,"])
def test_an_endpoint_that_is_not_host_port_is_refused(tiny_llama_path, value):
    result = CliRunner().invoke(main, ["complete", "hi", "-m", str(tiny_llama_path), "--rpc", value])
    assert result.exit_code == 2
    assert "is not HOST:PORT" in result.stderr


def test_eval_and_serve_take_rpc():
    for command in (["eval"], ["serve"], ["chat"], ["complete"]):
        assert "--rpc HOST:PORT[,...]" in CliRunner().invoke(main, [*command, "--help"]).stdout


def test_info_says_rpc_is_built_in():
    lines = dict(line.split(": ", 1) for line in CliRunner().invoke(main, ["info"]).stdout.splitlines())
    assert lines["rpc (--rpc)"] == "yes"


def _error_after(fault, smollm2_path: Path, server: RpcServer, *options: str) -> str:
    """Start a long reply through `server`, do `fault` to the server once tokens come back from it, and
    return the reply's one error line, checking that it ended with llama.cpp's abort status."""
    reply = subprocess.Popen(
        [*BACKSPACE, "complete", "Write a long story about the sea.", "-m", str(smollm2_path), "-n", "4000",
         "-c", "4096", "--seed", "1", "-t", "1", "--format", "jsonl", "--rpc", server.endpoint, *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(20):
            assert reply.stdout.readline()
        fault()
        err = reply.communicate(timeout=60)[1]
    finally:
        if reply.poll() is None:
            reply.kill()
            reply.wait()
    assert reply.returncode == ABORT_STATUS
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("Error")]
    return line


def test_a_server_killed_mid_reply_is_one_line_and_a_status(smollm2_path, one_server):
    line = _error_after(one_server.stop, smollm2_path, one_server)
    assert line.startswith("Error: llama.cpp aborted:") and "Remote RPC server crashed" in line


def test_a_server_that_stops_answering_mid_reply_is_one_line_after_the_timeout(smollm2_path, one_server):
    # SIGSTOP: the connection stays open, and only silence tells
    line = _error_after(lambda: one_server.process.send_signal(signal.SIGSTOP), smollm2_path, one_server,
                        "--rpc-timeout", "1")
    assert line.startswith("Error: llama.cpp aborted:") and "Remote RPC server" in line


class FallsSilent:
    """A relay to an rpc-server that falls silent, its connections left open, once clients have sent `limit`
    bytes through it: a worker that stops answering (a stopped process, a machine gone) while the model's
    tensors are on their way to it."""

    def __init__(self, upstream: str, limit: int) -> None:
        self.upstream, self.limit, self.sent = upstream, limit, 0
        self.silent = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets.append(self.listener)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            host, port = self.upstream.split(":")
            server = socket.create_connection((host, int(port)))
            self.sockets += [client, server]
            threading.Thread(target=self._relay, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket, counted: bool) -> None:
        while not self.silent.is_set():
            try:
                chunk = source.recv(1 << 16)
                if counted:
                    self.sent += len(chunk)
                    if self.sent >= self.limit:
                        self.silent.set()
                if self.silent.is_set():
                    return  # neither answered nor closed: silence
                if not chunk:  # a peer closed: pass it on, so that the server takes its next client
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(chunk)
            except OSError:
                return

    def close(self) -> None:
        for connection in self.sockets:
            connection.close()


def test_a_server_that_stops_answering_while_the_model_loads_is_one_line_after_the_timeout(smollm2_path,
                                                                                            one_server):
    relay = FallsSilent(one_server.endpoint, limit=8 << 20)  # of SmolLM2's ~90 MB of tensors
    try:
        started = time.monotonic()
        result = subprocess.run([*BACKSPACE, "complete", "hi", "-m", str(smollm2_path), "-n", "4", "-t", "1",
                                 "--rpc", relay.endpoint, "--rpc-timeout", "1"],
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
    finally:
        relay.close()
    assert relay.silent.is_set()  # it went quiet mid-load, not after
    assert result.returncode == ABORT_STATUS, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert line.startswith("Error: llama.cpp aborted:") and "Remote RPC server" in line
    assert took < 60


def test_chat_keeps_its_conversation_when_the_server_dies_mid_reply(smollm2_path, one_server, tmp_path):
    from terminal import Terminal

    command = [*BACKSPACE, "chat", "-m", str(smollm2_path), "-n", "8", "--seed", "1", "-t", "1",
               "--rpc", one_server.endpoint]
    terminal = Terminal(command, env={"XDG_STATE_HOME": str(tmp_path)})
    try:
        terminal.wait_for(r"(?m)^>>>$")
        terminal.type("Say hello.")
        terminal.press("Enter")
        terminal.wait_for(r"reply \d+ tok")
        terminal.type("/set max_tokens 4000")
        terminal.press("Enter")
        terminal.type("Tell me a very long story about the sea.")
        terminal.press("Enter")
        terminal.wait_for(r"sea\.\n(\S+\s+){6}")  # the reply is streaming from the server
        one_server.stop()
        terminal.wait_for(f"EXIT:{ABORT_STATUS}")
        screen = terminal.screen().replace("\n", "")  # the one line, unwrapped
    finally:
        terminal.close()
    assert "Traceback" not in screen
    saved = tmp_path / "backspace" / "aborted-chat.json"
    assert re.search(r"Error: llama\.cpp aborted: .*Remote RPC server crashed.*; the conversation so far is saved in",
                     screen)
    go_on = f"to go on with it: backspace {' '.join(command[3:])} --resume {saved}"
    assert "".join(go_on.split()) in "".join(screen.split())  # the screen's wraps may eat a space
    record = json.loads(saved.read_text())
    assert record["exchanges"][0]["user"] == "Say hello."

    # With the worker back (here: no worker, the model local), the conversation goes on from the file.
    terminal = Terminal([*command[:-2], "--resume", str(saved)], env={"XDG_STATE_HOME": str(tmp_path)})
    try:
        terminal.wait_for(r"(?m)^>>>$")
        screen = "".join(terminal.screen().split())
    finally:
        terminal.close()
    assert "Resumed1exchange(s)" in screen
    assert "".join(f">>> Say hello. {record['exchanges'][0]['reply']}".split()) in screen


def test_serve_through_rpc_answers_as_locally_and_ends_in_one_line_when_its_server_dies(tiny_llama_path, one_server):
    from serve_client import running_server

    body = {"prompt": PROMPT, "max_tokens": 40, "temperature": 1.0, "seed": 5}
    with running_server("-m", str(tiny_llama_path), "-t", "1") as local:
        expected = local.post("/v1/completions", body)[2]["choices"][0]["text"]
    with running_server("-m", str(tiny_llama_path), "-t", "1", "--rpc", one_server.endpoint) as remote:
        status, _, answer = remote.post("/v1/completions", body)
        assert (status, answer["choices"][0]["text"]) == (200, expected)
        one_server.stop()
        with pytest.raises(OSError):  # the server process ends while it answers
            remote.post("/v1/completions", body)
        remote.process.wait(timeout=30)
        log = remote.output()
    assert remote.process.returncode == ABORT_STATUS
    assert "Traceback" not in log
    (line,) = [line for line in log.splitlines() if line.startswith("Error")]
    assert line.startswith("Error: llama.cpp aborted:") and "Remote RPC server crashed" in line


def test_eval_through_rpc_scores_as_locally(tiny_llama_path, one_server, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"the water {n}", "answer": "is"}) + "\n" for n in range(3)))

    def outcomes(*rpc: str) -> list:
        command = [*BACKSPACE, "eval", str(tasks), "-m", str(tiny_llama_path), "-n", "8", "--raw", "-t", "1",
                   "--answers", str(tmp_path / "answers.jsonl"), *rpc]
        assert subprocess.run(command, capture_output=True).returncode == 0
        return [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]

    remote = outcomes("--rpc", one_server.endpoint)
    assert len(remote) == 6  # each task, with deletes and without
    assert remote == outcomes()
