"""Who may use `backspace serve`: a web page on another site reaches it neither through DNS rebinding (a Host
that names another server) nor cross-origin, unless --allow-host or --allow-origin lets it; a key it could
never match is refused at start-up."""
import subprocess
import sys

import pytest

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")

from backspace_cli.serve.access import Access  # noqa: E402
from serve_client import running_server  # noqa: E402

CHAT = "/v1/chat/completions"
QUESTION = {"messages": [{"role": "user", "content": "What is 12+7?"}], "max_tokens": 2}
ALLOWED_ORIGINS = ["http://localhost:3000", "https://app.example"]


@pytest.fixture(scope="module")
def server():
    origins = [argument for origin in ALLOWED_ORIGINS for argument in ("--allow-origin", origin)]
    with running_server(*origins, env={"BACKSPACE_ALLOW_HOSTS": "my.box,other.box"}) as server:
        yield server


def refused(answer, code: str) -> bool:
    status, headers, body = answer
    return status == 403 and headers["content-type"] == "application/json" and body["error"]["code"] == code


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:{port}", "127.0.0.1.attacker.example",
                                  "localhost.attacker.example:{port}", "evil@127.0.0.1", "[::1"])
def test_a_request_whose_host_names_another_server_is_refused(server, host):
    headers = {"Host": host.format(port=server.port)}
    for method, path, body in [("GET", "/health", None), ("GET", "/", None), ("GET", "/v1/models", None),
                               ("POST", CHAT, QUESTION)]:
        try:
            answer = server.request(method, path, body, headers)
        except ValueError:  # the page is HTML, not JSON: it was served
            answer = (200, {}, {})
        assert refused(answer, "host_not_allowed"), (method, path, answer)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LOCALHOST", "[::1]:{port}",
                                  "my.box:{port}", "other.box"])
def test_the_bound_address_localhost_and_allowed_hosts_are_answered(server, host):
    status, _, body = server.request("GET", "/health", headers={"Host": host.format(port=server.port)})
    assert status == 200 and body["status"] == "ok"


def test_a_cross_origin_post_is_refused_even_as_text_plain(server):
    """text/plain is what a page may POST to another site without asking the server first."""
    for origin in ["http://attacker.example", "null", f"http://localhost:{server.port + 1}"]:
        headers = {"Origin": origin, "Content-Type": "text/plain"}
        assert refused(server.post(CHAT, QUESTION, headers), "origin_not_allowed"), origin


def test_the_servers_own_page_and_clients_without_an_origin_are_answered(server):
    for host in [f"127.0.0.1:{server.port}", f"localhost:{server.port}"]:
        own = {"Host": host, "Origin": f"http://{host}"}
        assert server.post(CHAT, QUESTION, own)[0] == 200
    assert server.post(CHAT, QUESTION)[0] == 200


@pytest.mark.parametrize("origin", ALLOWED_ORIGINS)
def test_an_allowed_origin_is_answered_and_may_read_the_reply(server, origin):
    status, headers, _ = server.post(CHAT, QUESTION, {"Origin": origin})
    assert status == 200 and headers["access-control-allow-origin"] == origin
    connection = server.connection()
    try:
        connection.request("OPTIONS", CHAT, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization, content-type"})
        preflight = connection.getresponse()
        preflight.read()
        assert preflight.status == 200 and preflight.getheader("access-control-allow-origin") == origin
    finally:
        connection.close()


@pytest.mark.parametrize("key", ["sésame", "key\twith tab", " padded "])
def test_an_api_key_no_header_can_carry_is_refused_at_start_up_in_one_line(key):
    result = subprocess.run([sys.executable, "-m", "backspace_cli", "serve", "--port", "0", "--api-key", key],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--api-key" in result.stderr, result.stderr


@pytest.mark.parametrize("bound, host, answered", [
    ("0.0.0.0", "192.168.1.5:8080", True),  # bound everywhere: any address reaches it, and rebinding needs a name
    ("0.0.0.0", "[fe80::1]:8080", True),
    ("0.0.0.0", "attacker.example:8080", False),
    ("::", "localhost:8080", True),
    ("192.168.1.5", "192.168.1.5:8080", True),
    ("192.168.1.5", "192.168.1.6:8080", False),
    ("mybox.lan", "MYBOX.lan:8080", True),
    ("127.0.0.1", "127.0.0.1:8080:9", False),
])
def test_which_hosts_a_bound_address_answers(bound, host, answered):
    assert Access(bound).allows_host(host) is answered


def test_an_allowed_host_may_be_an_address():
    access = Access("127.0.0.1", hosts=("10.0.0.5", "[fd00::2]"))
    assert access.allows_host("10.0.0.5:8080") and access.allows_host("[fd00::2]:8080")
    assert not access.allows_host("10.0.0.6:8080")
