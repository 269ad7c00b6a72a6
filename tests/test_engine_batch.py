"""Replies stepped together in one batch: each is, event for event, the reply the Engine gives it alone."""
import random
import threading

import numpy as np
import pytest

import tiny_models
from backspace_cli.engine.batch import BatchEngine, BatchRequest
from backspace_cli.engine.batch_context import SequencesContext
from backspace_cli.engine.engine import DeleteRules, Engine, PromptTooLong
from backspace_cli.engine.events import Done
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sampling import greedy, make_logit_bias, make_sampler
from backspace_cli.engine.sequence import CacheSequence

WORDS = "the water is cold and the sky is blue so we go home now".split()


def one_thread(path):
    # One thread: a one-token step of these models is too small to share between threads.
    return load_model(path, n_ctx=512, n_threads=1)


@pytest.fixture(scope="module")
def llama(tiny_llama_path):
    return one_thread(tiny_llama_path)


@pytest.fixture(scope="module")
def gemma3(tiny_gemma3_path):
    return one_thread(tiny_gemma3_path)


@pytest.fixture(scope="module")
def mamba(tiny_mamba_path):
    return one_thread(tiny_mamba_path)


@pytest.fixture(scope="module")
def smollm2_model(smollm2_path):
    return one_thread(smollm2_path)


def delete_token(model):
    """The tiny models' delete token; SmolLM2 has none, so an ordinary token stands in (as --delete-token)."""
    return model.find_token(tiny_models.DELETE) or model.find_token("~")


def random_requests(model, rng, count, sampled=False):
    """Prompts of different lengths, replies of different lengths, and delete biases from none to strong."""
    delete = delete_token(model)
    requests = []
    for _ in range(count):
        prompt = model.tokenize(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))), add_bos=True)
        bias = make_logit_bias({delete: rng.choice([0.0, 5.0, 20.0, 50.0])})
        sampler = make_sampler(0.8, 40, 0.95, 0.05, rng.randrange(1 << 16)) if sampled else greedy
        requests.append(BatchRequest(prompt, sampler, [bias], rng.randint(4, 60),
                                     DeleteRules(token_id=delete, ban_deleted=not sampled)))
    return requests


def comparable(events):
    """Events with Done's timings left out, and how many prompt tokens were decoded: a cache statistic, which a
    reply that reuses the previous prompt's cache lowers."""
    *steps, done = events
    counts = done.counts
    return steps, (done.finish_reason, done.text, counts.prompt_tokens, counts.tokens, counts.generated,
                   counts.deletes, counts.refused_deletes, done.context_used)


def batched(engine, requests):
    replies = {index: [] for index in range(len(requests))}
    for index, event in engine.run(requests):
        replies[index].append(event)
    return [replies[index] for index in range(len(requests))]


def alone(model, request):
    return list(Engine(model).generate(request.prompt, sampler=request.sampler, max_tokens=request.max_tokens,
                                       logits_processors=request.logits_processors, rules=request.rules))


@pytest.mark.parametrize("model_name, seed", [("llama", 0), ("llama", 1), ("gemma3", 2), ("smollm2_model", 3)])
def test_each_greedy_reply_in_a_batch_is_the_reply_it_gets_alone(model_name, seed, request):
    model = request.getfixturevalue(model_name)
    rng = random.Random(seed)
    requests = random_requests(model, rng, 10)
    together = batched(BatchEngine(model, parallel=4), requests)  # more requests than sequences: they join late
    assert sum(isinstance(event, Done) for reply in together for event in reply) == len(requests)
    assert any(reply[-1].counts.deletes for reply in together)
    for request_, reply in zip(requests, together):
        assert comparable(reply) == comparable(alone(model, request_))


def test_sampled_replies_draw_in_a_batch_what_they_draw_alone_with_the_same_seeds(smollm2_model):
    model = smollm2_model
    requests = random_requests(model, random.Random(4), 6, sampled=True)
    together = batched(BatchEngine(model, parallel=3), requests)
    again = random_requests(model, random.Random(4), 6, sampled=True)  # fresh samplers, the same seeds
    for request_, reply in zip(again, together):
        assert comparable(reply) == comparable(alone(model, request_))


def test_a_step_of_smollm2_in_a_batch_gives_the_logits_of_a_step_alone_bit_for_bit(smollm2_model):
    model = smollm2_model
    rng = random.Random(5)
    prompts = [[1] + [rng.randrange(3, model.n_vocab) for _ in range(rng.randint(1, 40))] for _ in range(4)]
    steps = [[rng.randrange(3, model.n_vocab) for _ in range(8)] for _ in range(4)]
    context = SequencesContext(model, 4, 512)
    rows = [np.empty(model.n_vocab, dtype=np.float32) for _ in prompts]
    for seq, prompt in enumerate(prompts):
        context.decode_alone(seq, 0, prompt, rows[seq])
    together = [[] for _ in prompts]
    for step in range(8):
        context.decode_step([(seq, len(prompts[seq]) + step, steps[seq][step]) for seq in range(4)], rows)
        for seq in range(4):
            together[seq].append(rows[seq].copy())
    for seq, prompt in enumerate(prompts):
        sequence = CacheSequence(model, 512)
        sequence.feed(prompt)
        for step, token in enumerate(steps[seq]):
            assert np.array_equal(sequence.feed([token]), together[seq][step])


def test_every_live_reply_steps_in_one_decode_call(llama, monkeypatch):
    never_stop = make_logit_bias({2: -100.0})  # </s> never wins: every reply runs to its max_tokens
    requests = [BatchRequest(llama.tokenize(text, add_bos=True), greedy, [never_stop], max_tokens)
                for text, max_tokens in [("the water", 5), ("the sky is", 9), ("go", 9)]]
    sizes = []
    step = SequencesContext.decode_step
    monkeypatch.setattr(SequencesContext, "decode_step", lambda self, steps, outs: (sizes.append(len(steps)),
                                                                                     step(self, steps, outs)))
    batched(BatchEngine(llama, parallel=3), requests)
    # Each token is decoded once it is sampled: 5 steps of all three, then 4 of the two longer ones.
    assert sizes == [3] * 5 + [2] * 4


def test_a_request_joins_when_a_sequence_is_free_and_ends_in_its_own_order(llama):
    never_stop = make_logit_bias({2: -100.0})
    requests = [BatchRequest(llama.tokenize("the water", add_bos=True), greedy, [never_stop], max_tokens)
                for max_tokens in (12, 3, 7)]
    order = [index for index, event in BatchEngine(llama, parallel=2).run(requests) if isinstance(event, Done)]
    assert order == [1, 2, 0]  # the third waits for the second's sequence, and still ends before the first


def test_a_recurrent_model_runs_its_replies_one_at_a_time_and_says_so(mamba):
    engine = BatchEngine(mamba, parallel=4)
    assert engine.parallel == 1 and "one at a time" in engine.notice
    requests = random_requests(mamba, random.Random(6), 4)
    for request_, reply in zip(requests, batched(engine, requests)):
        assert comparable(reply) == comparable(alone(mamba, request_))


@pytest.mark.parametrize("leave", ["close", "ctrl-c"])
def test_a_run_left_early_ends_its_replies_and_the_next_run_is_unchanged(llama, leave):
    engine = BatchEngine(llama, parallel=3)
    requests = random_requests(llama, random.Random(7), 5)
    threads = threading.active_count()
    run = engine.run(requests)
    for _ in range(10):
        next(run)
    if leave == "close":
        run.close()
    else:
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C reaches the caller's thread, where every decode runs
            run.throw(KeyboardInterrupt())
    assert threading.active_count() == threads  # every reply's thread has ended
    assert [comparable(reply) for reply in batched(engine, requests)] == \
        [comparable(alone(llama, request_)) for request_ in requests]


def test_a_prompt_longer_than_the_context_is_refused(llama):
    too_long = BatchRequest([1] * llama.n_ctx, greedy)
    with pytest.raises(PromptTooLong):
        list(BatchEngine(llama, parallel=2).run([too_long]))

