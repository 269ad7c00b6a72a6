"""Property: after any script of appends and deletes, the next-token logits are bit-identical to a
state in which the deleted tokens were never generated, on attention, recurrent and hybrid models alike,
and no delete within the rewind window replays the sequence."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiny_models
from backspace_cli.engine.engine import DeleteRules, Engine
from backspace_cli.engine.sequence import CacheSequence

PROMPT = "the water is made of"
DEL = -1

MODELS = ["tiny_llama", "tiny_gemma3", "tiny_mamba", "tiny_lfm2", "smollm2"]
SLOW = {"smollm2": 12}  # examples for models whose decode step is slower
# Scripts long enough to cross Gemma 3's 8-token sliding window.
scripts = st.lists(st.one_of(st.integers(min_value=4, max_value=340), st.just(DEL)), min_size=1, max_size=24)


def reference_logits(sequence: CacheSequence, prompt: list[int], kept: list[int], probe: int) -> np.ndarray:
    """Logits after prompt + kept + probe, built the way a reply builds them: prompt, then one by one."""
    sequence.trim(0)
    sequence.feed(prompt)
    for token in kept:
        sequence.feed([token])
    return sequence.feed([probe]).copy()


@pytest.mark.parametrize("model_name", MODELS)
def test_sequence_trim_leaves_the_cache_as_if_the_tokens_were_never_fed(model_name, request):
    model = request.getfixturevalue(model_name)
    sequence = CacheSequence(model, batch_size=64)
    prompt = model.tokenize(PROMPT, add_bos=True)

    @settings(max_examples=SLOW.get(model_name, 40), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(script=scripts, probe=st.integers(min_value=4, max_value=340))
    def check(script, probe):
        sequence.trim(0)
        sequence.feed(prompt)
        kept: list[int] = []
        for step in script:
            if step == DEL:
                if kept:  # never into the prompt
                    kept.pop()
                    sequence.trim(len(prompt) + len(kept))
            else:
                kept.append(step)
                sequence.feed([step])
        assert sequence.tokens == prompt + kept
        after_deletes = sequence.feed([probe]).copy()
        assert sequence.rebuilds == 0  # every delete was within the snapshots of a recurrent state
        assert np.array_equal(after_deletes, reference_logits(sequence, prompt, kept, probe))

    check()


class Scripted:
    """Plays back token choices (DEL for the delete token), then end-of-generation."""

    def __init__(self, choices, delete, end):
        self.choices = [delete if choice == DEL else choice for choice in choices]
        self.end = end

    def __call__(self, logits):
        return self.choices.pop(0) if self.choices else self.end


@pytest.mark.parametrize("model_name", ["tiny_llama", "tiny_gemma3", "tiny_mamba", "tiny_lfm2"])
def test_an_engine_reply_with_deletes_leaves_the_state_of_its_final_text(model_name, request):
    model = request.getfixturevalue(model_name)
    delete = model.find_token(tiny_models.DELETE)
    end = 2  # </s>
    engine = Engine(model)
    prompt = model.tokenize(PROMPT, add_bos=True)
    rules = DeleteRules(token_id=delete, window=8)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(script=scripts, probe=st.integers(min_value=4, max_value=340))
    def check(script, probe):
        engine.sequence.trim(0)
        events = list(engine.generate(prompt, sampler=Scripted(script, delete, end), rules=rules))
        kept = engine.sequence.tokens[len(prompt):]
        assert engine.sequence.tokens[: len(prompt)] == prompt
        assert events[-1].counts.tokens == len(kept)
        after = engine.sequence.feed([probe]).copy()
        assert engine.sequence.rebuilds == 0
        assert np.array_equal(after, reference_logits(engine.sequence, prompt, kept, probe))

    check()
