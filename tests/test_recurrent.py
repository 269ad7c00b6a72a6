"""Deletes on recurrent (Mamba) and hybrid (LFM2) models: a snapshot of the recurrent state serves every
delete within the rewind window, deletes in a row cost one cut, and beyond the window the sequence is
replayed; the next-token logits are bit-identical to a run that never had the deleted tokens either way."""
import numpy as np
import pytest

import tiny_models
from backspace_cli.engine.engine import DeleteRules, Engine
from backspace_cli.engine.sequence import CacheSequence
from test_invariants import PROMPT, reference_logits

MODELS = ["tiny_mamba", "tiny_lfm2"]
PROBE = 60


class Scripted:
    def __init__(self, choices, end=2):
        self.choices, self.end = list(choices), end

    def __call__(self, logits):
        return self.choices.pop(0) if self.choices else self.end


@pytest.mark.parametrize("model_name", MODELS)
def test_deletes_in_a_row_cost_one_restore_and_no_replay(model_name, request):
    model = request.getfixturevalue(model_name)
    delete = model.find_token(tiny_models.DELETE)
    a, b, c, d = model.tokenize("abcd", add_bos=False, special=False)[-4:]
    engine = Engine(model)
    prompt = model.tokenize(PROMPT, add_bos=True)
    events = list(engine.generate(prompt, sampler=Scripted([a, b, c, delete, delete, d]),
                                  rules=DeleteRules(token_id=delete)))
    sequence = engine.sequence
    assert sequence.tokens == prompt + [a, d]
    assert events[-1].counts.deletes == 2
    assert (sequence.restores, sequence.rebuilds) == (1, 0)  # two deletes, one cut of the cache
    after = sequence.feed([PROBE]).copy()
    assert np.array_equal(after, reference_logits(sequence, prompt, [a, d], PROBE))


@pytest.mark.parametrize("model_name", MODELS)
def test_a_delete_right_after_the_prompt_restores_the_prompts_state(model_name, request):
    model = request.getfixturevalue(model_name)
    sequence = CacheSequence(model, batch_size=4)  # a prompt of several decode calls
    prompt = model.tokenize(PROMPT, add_bos=True)
    sequence.feed(prompt)
    sequence.feed([40])
    sequence.trim(len(prompt))
    after = sequence.feed([PROBE]).copy()
    assert (sequence.restores, sequence.rebuilds) == (1, 0)
    assert np.array_equal(after, reference_logits(sequence, prompt, [], PROBE))


@pytest.mark.parametrize("model_name", MODELS)
def test_beyond_the_snapshots_the_sequence_is_replayed(model_name, request):
    model = request.getfixturevalue(model_name)
    sequence = CacheSequence(model, batch_size=64, rewind=2)  # snapshots of the newest 3 lengths
    prompt = model.tokenize(PROMPT, add_bos=True)
    kept = [40, 41]
    sequence.feed(prompt)
    for token in kept + [42, 43, 44]:
        sequence.feed([token])
    sequence.trim(len(prompt) + len(kept))  # three tokens back: its state is no longer kept
    after = sequence.feed([PROBE]).copy()
    assert (sequence.restores, sequence.rebuilds) == (0, 1)
    assert np.array_equal(after, reference_logits(sequence, prompt, kept, PROBE))


def test_an_attention_model_keeps_no_snapshots(tiny_llama):
    sequence = CacheSequence(tiny_llama, batch_size=64)
    sequence.feed(tiny_llama.tokenize(PROMPT, add_bos=True) + [40])
    sequence.trim(len(sequence.tokens) - 1)
    sequence.feed([41])
    assert (sequence.restores, sequence.rebuilds) == (0, 0)
