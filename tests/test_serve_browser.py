"""The chat page in a real browser: Debian's chromium, headless, driven by Playwright (no browser download)."""
import io
import json
import shutil

import pytest

from backspace_cli.render.renderers import TOOK_BACK

pytest.importorskip("starlette", reason="the server's extra is not installed: pip install -e '.[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (make test installs Debian's package; apt-get install chromium): "
                "the page's browser test cannot run", allow_module_level=True)

from builtin_recipe import DESCRIPTION, EXAMPLES  # noqa: E402
from serve_client import done_record, running_server, sse_chunks  # noqa: E402


QUESTION = "What is 12+7?"
EMPTIED = "Which two of 8 10 9 1 4 add up to 2?"  # no pair does: the built-in model writes a reply, deletes it all
# Records each piece's look at the moment it is marked deleted, before any timer can change it.
WATCH_DELETES = """() => {
  window.deletedLooks = [];
  new MutationObserver((records) => {
    for (const record of records) {
      const before = (record.oldValue || "").split(" ");
      if (record.target.classList.contains("deleted") && !before.includes("deleted")) {
        const style = getComputedStyle(record.target);
        window.deletedLooks.push([style.display, style.textDecorationLine]);
      }
    }
  }).observe(document.getElementById("log"), {subtree: true, attributes: true, attributeFilter: ["class"],
                                                attributeOldValue: true});
}"""


@pytest.fixture(scope="module")
def server():
    with running_server("--logit-bias", "<|delete|>=10") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    try:
        page.goto(server.url)
        sync_api.expect(page.locator("#model")).to_have_text("backspace-tiny")
        yield page
    finally:
        page.close()


def ask(page, question: str) -> dict:
    """Send `question` as a person would; return the done record of the stream the page received."""
    with page.expect_response("**/v1/chat/completions") as answer:
        page.fill("#message", question)
        page.press("#message", "Enter")
    chunks = sse_chunks(io.BytesIO(answer.value.body()))
    sync_api.expect(page.locator(".reply:not([data-done])")).to_have_count(0)  # an empty reply is never visible
    return done_record(chunks)


def kept_text(page) -> str:
    return "".join(page.locator(".reply .piece:not(.deleted)").all_text_contents())


def test_in_trace_mode_deleted_pieces_stay_struck_through_beside_the_final_answer(page):
    page.check("#trace")
    done = ask(page, QUESTION)
    deleted = page.locator(".reply .deleted")
    assert deleted.count() == done["deletes"] > 0
    for index in range(deleted.count()):
        display, line = deleted.nth(index).evaluate("e => [getComputedStyle(e).display, getComputedStyle(e).textDecorationLine]")
        assert display != "none" and "line-through" in line
    assert kept_text(page) == done["text"]
    assert f"{done['deletes']} deletes" in page.locator(".stats").inner_text()


def test_outside_trace_mode_a_deleted_piece_flashes_struck_through_then_goes(page):
    page.evaluate(WATCH_DELETES)
    done = ask(page, QUESTION)
    looks = page.evaluate("window.deletedLooks")
    assert done["deletes"] > 0 and looks == [["inline", "line-through"]] * done["deletes"]
    sync_api.expect(page.locator(".flash")).to_have_count(0)
    assert page.locator(".reply").inner_text() == done["text"]  # what shows is the final answer alone
    page.check("#trace")  # and the toggle brings the deleted text back
    assert page.locator(".reply .deleted").first.is_visible()


def test_the_next_question_sends_the_history_and_reuses_the_servers_cache(page):
    ask(page, QUESTION)
    ask(page, "And 3+4?")
    assert page.locator(".reply[data-done]").count() == 2
    stats = page.locator(".stats").nth(1).inner_text()
    assert ", 0 cached" not in stats and "cached" in stats


def test_model_text_is_shown_as_text_never_as_html(page):
    hostile = ['<img src=x onerror="window.pwned=1">', "<script>window.pwned=1</script>"]
    events = [{"type": "token", "id": 1, "text": text} for text in hostile]
    done = {"type": "done", "finish_reason": "stop", "text": "".join(hostile), "tokens": 2, "generated": 2,
            "deletes": 0, "prompt_tokens": 1, "prompt_tps": 1.0, "gen_tps": 1.0}
    body = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'backspace': event}]})}\n\n"
                   for event in [*events, done]) + "data: [DONE]\n\n"
    page.route("**/v1/chat/completions", lambda route: route.fulfill(status=200, body=body,
                                                                      content_type="text/event-stream"))
    page.fill("#message", "anything")
    page.press("#message", "Enter")
    page.wait_for_selector(".reply[data-done]")
    assert page.locator(".reply").inner_text() == "".join(hostile)
    assert page.evaluate("window.pwned") is None and page.locator(".reply img, .reply script").count() == 0


def test_the_page_introduces_the_built_in_model_and_offers_its_examples(page):
    sync_api.expect(page.locator("#description")).to_have_text(DESCRIPTION)
    examples = page.locator("#examples .example")
    assert examples.all_text_contents() == list(EXAMPLES)
    placeholder = page.get_attribute("#message", "placeholder")
    assert placeholder == f"Ask something, for example: {EXAMPLES[0]}"
    examples.nth(1).click()  # an example goes into the input, to be sent or changed
    assert page.input_value("#message") == EXAMPLES[1]


def test_a_reply_the_model_deleted_entirely_says_so_in_one_line(page):
    done = ask(page, EMPTIED)
    assert done["text"] == "" and done["deletes"] > 0
    sync_api.expect(page.locator(".note")).to_have_text(TOOK_BACK)
    assert page.locator(".reply + .note + .stats").count() == 1  # between the empty reply and its statistics
    done = ask(page, QUESTION)
    assert done["text"] and page.locator(".note").count() == 1  # a reply with text gets none


def test_a_model_that_says_nothing_about_itself_gets_a_page_without_an_introduction(browser, tiny_llama_path):
    with running_server("-m", str(tiny_llama_path)) as server:
        page = browser.new_page()
        try:
            page.goto(server.url)
            sync_api.expect(page.locator("#model")).to_have_text(tiny_llama_path.stem)
            assert page.locator("#about").is_hidden()
            assert page.get_attribute("#message", "placeholder") == "Ask something"
        finally:
            page.close()
