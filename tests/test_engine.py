"""The delete-aware engine, on real llama.cpp: what a delete does, what it refuses, and how replies end."""
import math

import numpy as np
import pytest

import tiny_models
from backspace_cli import defaults
from backspace_cli.engine.engine import DeleteRules, Engine, PromptTooLong, consume
from backspace_cli.engine.events import CONTEXT, DELETE_BUDGET, INTERRUPTED, LENGTH, STOP, Delete, Token
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sampling import greedy, make_logit_bias

DEL = "DEL"  # stands for the model's delete token in a script


class Script:
    """A sampler that plays back a list of choices, then end-of-generation; it records what it was offered."""

    def __init__(self, model, choices, fallback=None):
        delete = model.find_token(tiny_models.DELETE)
        self.choices = [delete if choice == DEL else choice for choice in choices]
        self.fallback = fallback or (lambda logits: 2)  # </s>
        self.offered = []

    def __call__(self, logits):
        self.offered.append(logits.copy())
        return self.choices.pop(0) if self.choices else self.fallback(logits)


VOCABULARY = tiny_models.vocabulary(tiny_models.DELETE)[0]


def ids(model, text):
    """The ids of single characters in the tiny models' vocabulary."""
    return [VOCABULARY.index(character) for character in text]


def run(model, choices, *, prompt="the water", engine=None, **options):
    engine = engine or Engine(model)
    sampler = options.pop("sampler", None) or Script(model, choices)
    rules = options.pop("rules", DeleteRules(token_id=model.find_token(tiny_models.DELETE)))
    events = list(
        engine.generate(model.tokenize(prompt, add_bos=True), sampler=sampler, rules=rules, **options)
    )
    return events[:-1], events[-1], sampler, engine


def test_a_delete_removes_the_last_token_and_exactly_its_text(tiny_llama):
    a, b, c = ids(tiny_llama, "abc")
    events, done, _, _ = run(tiny_llama, [a, b, DEL, c])
    assert events == [Token(a, "a"), Token(b, "b"), Delete(b, "b"), Token(c, "c")]
    assert done.text == "ac"
    assert (done.counts.tokens, done.counts.generated, done.counts.deletes) == (2, 3, 1)


def test_the_delete_token_never_reaches_the_model_or_the_output(tiny_llama):
    a, b = ids(tiny_llama, "ab")
    delete = tiny_llama.find_token(tiny_models.DELETE)
    _, done, _, engine = run(tiny_llama, [a, DEL, b])
    prompt = tiny_llama.tokenize("the water", add_bos=True)
    assert engine.sequence.tokens == prompt + [b]
    assert delete not in engine.sequence.tokens
    assert tiny_models.DELETE not in done.text


def test_after_a_delete_the_retry_is_offered_exactly_the_same_distribution(tiny_llama):
    a, b = ids(tiny_llama, "ab")
    _, _, script, _ = run(tiny_llama, [a, b, DEL, a])
    before, retry = script.offered[1], script.offered[3]  # both offered at the position of b
    assert np.array_equal(before, retry)


def test_a_sampled_retry_may_choose_the_deleted_token_again_until_the_position_limit(tiny_llama):
    (a,) = ids(tiny_llama, "a")
    delete = tiny_llama.find_token(tiny_models.DELETE)
    events, done, script, _ = run(tiny_llama, [a, DEL] * 4 + [a])
    assert events == [Token(a, "a"), Delete(a, "a")] * 4 + [Token(a, "a")]
    assert script.offered[9][delete] == -math.inf  # four deletes at the first position: "a" stays
    assert done.text == "a"


def test_greedy_decoding_bans_the_deleted_token_at_its_position(tiny_llama):
    a, b = ids(tiny_llama, "ab")
    rules = DeleteRules(token_id=tiny_llama.find_token(tiny_models.DELETE), ban_deleted=True)
    _, _, script, _ = run(tiny_llama, [a, b, DEL, a], rules=rules)
    before, retry = script.offered[1], script.offered[3]  # both offered at the position of b
    assert retry[b] == -math.inf
    unbanned = np.arange(len(before)) != b
    assert np.array_equal(before[unbanned], retry[unbanned])


def test_a_greedy_retry_differs_from_the_deleted_token(tiny_llama):
    delete = tiny_llama.find_token(tiny_models.DELETE)
    calls = []

    def delete_second_token(logits):  # greedy, except that the second choice is the delete token
        calls.append(greedy(logits))
        return delete if len(calls) == 3 else calls[-1]

    rules = DeleteRules(token_id=delete, ban_deleted=True)
    events, _, _, _ = run(tiny_llama, [], sampler=delete_second_token, max_tokens=3, rules=rules)
    tokens = [event for event in events if isinstance(event, Token)]
    deleted = next(event for event in events if isinstance(event, Delete))
    assert deleted.id == tokens[1].id
    assert tokens[2].id != deleted.id


def test_a_delete_with_nothing_to_remove_is_refused_and_the_prompt_is_kept(tiny_llama):
    (a,) = ids(tiny_llama, "a")
    delete = tiny_llama.find_token(tiny_models.DELETE)
    events, done, script, engine = run(tiny_llama, [DEL, a])
    prompt = tiny_llama.tokenize("the water", add_bos=True)
    assert events == [Token(a, "a")]
    assert done.counts.refused_deletes == 1
    assert script.offered[1][delete] == -math.inf  # banned at that position; sampling went on
    assert engine.sequence.tokens[: len(prompt)] == prompt


def test_tokens_older_than_the_rewind_window_are_final(tiny_llama):
    a, b, c, d = ids(tiny_llama, "abcd")
    rules = DeleteRules(token_id=tiny_llama.find_token(tiny_models.DELETE), window=2)
    events, done, _, _ = run(tiny_llama, [a, b, c, DEL, DEL, DEL, d], rules=rules)
    assert [type(event).__name__ for event in events] == ["Token"] * 3 + ["Delete"] * 2 + ["Token"]
    assert done.text == "ad"
    assert done.counts.refused_deletes == 1


def test_bans_are_forgotten_when_a_delete_goes_back_past_their_position(tiny_llama):
    a, b, c, d = ids(tiny_llama, "abcd")
    rules = DeleteRules(token_id=tiny_llama.find_token(tiny_models.DELETE), ban_deleted=True)
    _, _, script, _ = run(tiny_llama, [a, b, DEL, c, DEL, DEL, d, a], rules=rules)
    at_second_position = script.offered[7]  # after "d" replaced "a": a new prefix
    assert at_second_position[b] != -math.inf and at_second_position[c] != -math.inf
    assert script.offered[6][a] == -math.inf  # "a" itself stays banned at the first position


def test_after_max_per_position_deletes_the_next_token_is_kept(tiny_llama):
    a, b, c = ids(tiny_llama, "abc")
    delete = tiny_llama.find_token(tiny_models.DELETE)
    rules = DeleteRules(token_id=delete, max_per_position=2)
    _, _, script, _ = run(tiny_llama, [a, DEL, b, DEL, c], rules=rules)
    assert script.offered[1][delete] != -math.inf  # one delete at the first position: allowed
    assert script.offered[5][delete] == -math.inf  # two: the delete token is banned after "c"


def test_the_delete_budget_ends_the_reply(tiny_llama):
    a, b = ids(tiny_llama, "ab")
    rules = DeleteRules(token_id=tiny_llama.find_token(tiny_models.DELETE), max_deletes=1)
    events, done, _, _ = run(tiny_llama, [a, DEL, b, DEL], rules=rules)
    assert done.finish_reason == DELETE_BUDGET
    assert done.text == "b"
    assert done.counts.deletes == 1


def replay(events):
    pieces = []
    for event in events:
        if isinstance(event, Token):
            pieces.append(event.text)
        else:
            assert pieces.pop() == event.text
    return "".join(pieces)


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_mamba"])
def test_an_adversarial_delete_bias_terminates_with_sane_output(model_name, request):
    model = request.getfixturevalue(model_name)
    delete = model.find_token(tiny_models.DELETE)
    never_stop = make_logit_bias({delete: 100.0, 2: -100.0})  # and </s> never wins
    events, done, _, engine = run(model, [], sampler=greedy, logits_processors=[never_stop], max_tokens=40)
    assert done.finish_reason == DELETE_BUDGET
    assert done.counts.deletes == DeleteRules(token_id=delete).max_deletes
    assert replay(events) == done.text
    prompt = model.tokenize("the water", add_bos=True)
    assert engine.sequence.tokens[: len(prompt)] == prompt


def test_no_delete_bans_the_delete_token_everywhere(tiny_llama):
    delete = tiny_llama.find_token(tiny_models.DELETE)
    rules = DeleteRules(token_id=delete, enabled=False)
    events, done, _, _ = run(
        tiny_llama, [], sampler=greedy, rules=rules, logits_processors=[make_logit_bias({delete: 100.0})],
        max_tokens=10,
    )
    assert all(isinstance(event, Token) for event in events)
    assert (done.counts.deletes, done.counts.refused_deletes, done.counts.tokens) == (0, 0, 10)


def test_a_model_without_a_delete_token_generates_plainly(tiny_llama_without_delete_path):
    model = load_model(tiny_llama_without_delete_path, n_ctx=128, n_threads=2)
    events, done, _, _ = run(model, [], sampler=greedy, rules=DeleteRules(token_id=None), max_tokens=8)
    assert len(events) == 8 and all(isinstance(event, Token) for event in events)
    assert done.finish_reason == LENGTH


def test_only_a_reply_that_can_delete_keeps_a_rewind_window(tiny_llama):
    delete = tiny_llama.find_token(tiny_models.DELETE)
    for rules in (DeleteRules(token_id=None), DeleteRules(token_id=delete, enabled=False)):
        assert not rules.can_delete
        _, _, _, engine = run(tiny_llama, [], sampler=greedy, rules=rules, max_tokens=4)
        assert engine._logits_window is None  # no memory for it, and no row copied per step
    for rules in (DeleteRules(token_id=delete), DeleteRules(token_id=None, marker="[DELETE]")):
        assert rules.can_delete
        _, _, _, engine = run(tiny_llama, [], sampler=greedy, rules=rules, max_tokens=4)
        assert engine._logits_window is not None


def test_a_character_split_across_tokens_is_emitted_whole_and_deleted_exactly(tiny_llama):
    first, second = VOCABULARY.index("<0xC3>"), VOCABULARY.index("<0xA9>")  # "é" is C3 A9
    (a,) = ids(tiny_llama, "a")
    events, done, _, _ = run(tiny_llama, [first, second, DEL, DEL, a, first, second])
    assert events == [
        Token(first, ""), Token(second, "é"), Delete(second, "é"), Delete(first, ""),
        Token(a, "a"), Token(first, ""), Token(second, "é"),
    ]
    assert done.text == "aé"


def test_end_of_generation_stops_the_reply(tiny_llama):
    (a,) = ids(tiny_llama, "a")
    _, done, _, _ = run(tiny_llama, [a])
    assert (done.finish_reason, done.text) == (STOP, "a")


def test_max_tokens_stops_the_reply(tiny_llama):
    _, done, _, _ = run(tiny_llama, [], sampler=greedy, max_tokens=5)
    assert (done.finish_reason, done.counts.tokens) == (LENGTH, 5)


# llama.cpp rounds a context up to a multiple of 256 tokens.
def test_a_full_context_ends_the_reply_without_a_crash(tiny_llama_path):
    model = load_model(tiny_llama_path, n_ctx=256, n_threads=2)
    never_stop = make_logit_bias({2: -100.0})
    _, done, _, engine = run(
        model, [], prompt="the water " * 20, sampler=greedy, logits_processors=[never_stop], max_tokens=500
    )
    assert done.finish_reason == CONTEXT
    assert len(engine.sequence.tokens) == model.n_ctx == done.context_used


def test_a_prompt_longer_than_the_context_is_refused(tiny_llama_path):
    model = load_model(tiny_llama_path, n_ctx=256, n_threads=2)
    with pytest.raises(PromptTooLong, match="the context holds 256"):
        Engine(model).generate(model.tokenize("the water " * 60, add_bos=True), sampler=greedy)


def test_ctrl_c_ends_the_reply_as_interrupted_and_the_cache_stays_usable(tiny_llama):
    engine = Engine(tiny_llama)
    prompt = tiny_llama.tokenize("the water", add_bos=True)
    seen = []

    def impatient(event):
        seen.append(event)
        if len(seen) == 3:
            raise KeyboardInterrupt

    done = consume(engine.generate(prompt, sampler=greedy, max_tokens=20), impatient)
    assert done.finish_reason == INTERRUPTED
    assert done.text == replay(seen[:3])
    assert engine.sequence.tokens[: len(prompt)] == prompt
    again = list(engine.generate(prompt, sampler=greedy, max_tokens=20))[-1]
    fresh = list(Engine(tiny_llama).generate(prompt, sampler=greedy, max_tokens=20))[-1]
    assert again.text == fresh.text


def test_a_second_reply_reuses_the_cached_prompt(tiny_llama):
    engine = Engine(tiny_llama)
    prompt = tiny_llama.tokenize("the water is made of", add_bos=True)
    first = list(engine.generate(prompt, sampler=greedy, max_tokens=4))[-1]
    second = list(engine.generate(prompt, sampler=greedy, max_tokens=4))[-1]
    assert first.counts.evaluated_prompt_tokens == len(prompt)
    assert second.counts.evaluated_prompt_tokens == 1
    assert first.text == second.text


def test_a_recurrent_model_cannot_trim_its_cache_so_the_engine_restores_a_snapshot(tiny_mamba, tiny_llama):
    a, b = ids(tiny_mamba, "ab")
    _, mamba_done, _, mamba_engine = run(tiny_mamba, [a, DEL, b])
    _, llama_done, _, llama_engine = run(tiny_llama, [a, DEL, b])
    assert (mamba_done.text, llama_done.text) == ("b", "b")
    assert (mamba_engine.sequence.restores, mamba_engine.sequence.rebuilds) == (1, 0)  # no replay
    assert (llama_engine.sequence.restores, llama_engine.sequence.rebuilds) == (0, 0)  # trimmed in place


MARKER = "XYZ"  # three single-character tokens in the tiny vocabulary


def marker_rules(**options):
    return DeleteRules(token_id=None, marker=MARKER, **options)


def test_a_marker_is_never_shown_and_reads_as_one_delete_of_the_token_before_it(tiny_llama):
    a, b, c, x, y, z = ids(tiny_llama, "abcXYZ")
    events, done, script, engine = run(tiny_llama, [a, b, x, y, z, c], rules=marker_rules())
    assert events == [Token(a, "a"), Token(b, "b"), Delete(b, "b"), Token(c, "c")]
    assert done.text == "ac" and done.counts.deletes == 1
    prompt = tiny_llama.tokenize("the water", add_bos=True)
    assert engine.sequence.tokens == prompt + [a, c]
    retry = script.offered[5]  # at b's position again: the same distribution, for a fresh try
    assert np.array_equal(retry, script.offered[1])


def test_text_that_only_begins_like_the_marker_is_shown_once_it_cannot_be_the_marker(tiny_llama):
    a, x, y = ids(tiny_llama, "aXY")
    events, done, _, _ = run(tiny_llama, [a, x, y, x, a, x], rules=marker_rules())
    assert events == [Token(a, "a"), Token(x, "X"), Token(y, "Y"), Token(x, "X"), Token(a, "a"), Token(x, "X")]
    assert done.text == "aXYXaX"  # the last X was held, and shown when the reply ended


def test_a_marker_with_nothing_before_it_is_removed_and_refused(tiny_llama):
    a, x, y, z = ids(tiny_llama, "aXYZ")
    events, done, script, engine = run(tiny_llama, [x, y, z, a], rules=marker_rules())
    assert events == [Token(a, "a")]
    assert done.text == "a" and done.counts.refused_deletes == 1 and done.counts.deletes == 0
    assert script.offered[3][x] == -math.inf  # the marker's first token is banned at that position
    assert engine.sequence.tokens == tiny_llama.tokenize("the water", add_bos=True) + [a]


def test_marker_deletes_are_bounded_per_position(tiny_llama):
    a, b, c, x, y, z = ids(tiny_llama, "abcXYZ")
    _, _, script, _ = run(tiny_llama, [a, x, y, z, b, x, y, z, c], rules=marker_rules(max_per_position=2))
    assert script.offered[-1][x] == -math.inf  # two deletes at the first position: "c" stays


def test_with_deletes_off_a_marker_is_rolled_back_and_its_first_token_banned_there(tiny_llama):
    a, b, x, y, z = ids(tiny_llama, "abXYZ")
    events, done, script, engine = run(tiny_llama, [a, x, y, z, b], rules=marker_rules(enabled=False))
    assert events == [Token(a, "a"), Token(b, "b")]  # plain generation: no marker, no delete
    assert done.text == "ab" and (done.counts.deletes, done.counts.refused_deletes) == (0, 0)
    assert script.offered[4][x] == -math.inf and np.isfinite(script.offered[1][x])
    others = np.arange(len(script.offered[1])) != x
    assert np.array_equal(script.offered[4][others], script.offered[1][others])  # the same state as before X
    assert engine.sequence.tokens == tiny_llama.tokenize("the water", add_bos=True) + [a, b]


def test_an_interrupted_reply_does_not_keep_text_it_never_showed(tiny_llama):
    a, x = ids(tiny_llama, "aX")

    def interrupt(logits):
        raise KeyboardInterrupt

    events, done, _, engine = run(tiny_llama, [], sampler=Script(tiny_llama, [a, x], fallback=interrupt),
                                  rules=marker_rules())
    assert events == [Token(a, "a")]  # X was held: it might have begun the marker
    assert done.finish_reason == INTERRUPTED and done.text == "a"
    assert engine.sequence.tokens == tiny_llama.tokenize("the water", add_bos=True) + [a]


def test_the_session_reads_a_marker_from_the_converters_metadata(tiny_llama_without_delete_path, tmp_path):
    from backspace_convert import ConvertSpec, convert_file
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings

    converted = tmp_path / "marker.gguf"
    convert_file(tiny_llama_without_delete_path, converted, ConvertSpec(mode="marker", marker=MARKER),
                 force=False, check=False, progress=None)
    session = Session(Settings(model=str(converted), ctx_size=256))
    assert (session.delete_token.source, session.rules.marker, session.rules.token_id) == ("marker", MARKER, None)


def test_sessions_ban_what_they_delete_only_when_decoding_greedily(tiny_llama_path):
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings

    greedy = Session(Settings(model=str(tiny_llama_path), temp=0.0, ctx_size=256))
    sampled = Session(Settings(model=str(tiny_llama_path), ctx_size=256))
    assert greedy.rules.ban_deleted and not sampled.rules.ban_deleted


def test_a_renderer_holds_text_back_only_while_a_reply_can_still_delete_it(tiny_llama_path,
                                                                         tiny_llama_without_delete_path):
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings

    def window(path, **settings):
        return Session(Settings(model=str(path), ctx_size=256, **settings)).rewind_window

    assert window(tiny_llama_path) == defaults.REWIND_WINDOW
    assert window(tiny_llama_path, no_delete=True) == 0
    assert window(tiny_llama_without_delete_path) == 0
