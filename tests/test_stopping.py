"""Work that its caller no longer wants stops between two of its steps: a prompt's decode between batches,
ending the reply as an interrupted one with the cache as exact as ever, and a chat prompt's tokenizing
between its runs of text."""
import pytest

from backspace_cli.engine.chat_template import ChatTemplate
from backspace_cli.engine.engine import Engine
from backspace_cli.engine.events import INTERRUPTED, Done
from backspace_cli.engine.prompt import prompt_tokens
from backspace_cli.engine.sampling import greedy
from backspace_cli.engine.stopping import Stopped

BATCH = 4  # tokens per decode call: the prompt below takes several
PROMPT = "the water was cold and the sky was grey over the hills"


class StopAfter:
    """A stop that says no for its first `answers` asks, then yes; it counts the asks."""

    def __init__(self, answers: int) -> None:
        self.answers, self.asked = answers, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked > self.answers


def reply(engine, prompt, **options):
    """The reply's token ids, its Done, and what of it does not depend on time."""
    events = list(engine.generate(prompt, sampler=greedy, max_tokens=8, **options))
    done = events[-1]
    return [event.id for event in events[:-1]], done, (done.finish_reason, done.text, done.counts)


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_mamba"])
def test_a_stop_between_prompt_batches_ends_the_reply_interrupted_and_the_cache_stays_exact(model_name, request):
    model = request.getfixturevalue(model_name)
    prompt = model.tokenize(PROMPT, add_bos=True)
    assert len(prompt) > 3 * BATCH
    engine = Engine(model, batch_size=BATCH)
    stop = StopAfter(1)

    (done,) = engine.generate(prompt, sampler=greedy, stop=stop)
    assert isinstance(done, Done) and done.finish_reason == INTERRUPTED and done.text == ""
    assert (done.counts.prompt_tokens, done.counts.evaluated_prompt_tokens) == (len(prompt), BATCH)
    assert stop.asked == 2 and engine.sequence.tokens == prompt[:BATCH] and done.context_used == BATCH

    tokens, after, _ = reply(engine, prompt)
    assert after.counts.evaluated_prompt_tokens == len(prompt) - BATCH  # the batch decoded before is reused
    fresh_tokens, fresh, _ = reply(Engine(model, batch_size=BATCH), prompt)
    assert (tokens, after.text, after.finish_reason) == (fresh_tokens, fresh.text, fresh.finish_reason)


def test_a_stop_that_never_says_yes_changes_nothing(tiny_llama):
    prompt = tiny_llama.tokenize(PROMPT, add_bos=True)
    stop = StopAfter(len(prompt))
    tokens, _, ended = reply(Engine(tiny_llama, batch_size=BATCH), prompt, stop=stop)
    assert (tokens, ended) == reply(Engine(tiny_llama, batch_size=BATCH), prompt)[::2]
    assert stop.asked == -(-len(prompt) // BATCH)  # once per batch of the prompt; never per generated token


MESSAGES = [{"role": "system", "content": "You answer in one line."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "What is 12+7?"}]


def test_tokenizing_a_chat_prompt_stops_between_its_runs_of_text(tiny_llama):
    template = ChatTemplate(tiny_llama)
    whole = prompt_tokens(tiny_llama, MESSAGES, template)
    every = StopAfter(len(whole))
    assert prompt_tokens(tiny_llama, MESSAGES, template, stop=every) == whole
    assert every.asked > 2  # once before each run of text between the template's control tokens
    stop = StopAfter(1)
    with pytest.raises(Stopped):
        prompt_tokens(tiny_llama, MESSAGES, template, stop=stop)
    assert stop.asked == 2  # nothing more was tokenized once it said yes
