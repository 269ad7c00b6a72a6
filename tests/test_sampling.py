"""Samplers and logits processors: what each setting keeps, and that a seed fixes the draw."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backspace_cli.engine._min_p import min_p
from backspace_cli.engine.sampler_chain import TOKEN_DATA
from backspace_cli.engine.sampling import greedy, make_logit_bias, make_logits_processors, make_repeat_penalty, make_sampler

LOGITS = np.array([1.0, 5.0, 4.5, -2.0, 4.9, 0.0], dtype=np.float32)


def draws(sampler, n=400):
    return {sampler(LOGITS.copy()) for _ in range(n)}


def test_temperature_zero_is_greedy():
    assert make_sampler(0.0, 40, 0.95, 0.05, seed=1) is greedy
    assert greedy(LOGITS.copy()) == 1


def test_top_k_keeps_the_k_most_likely():
    assert draws(make_sampler(1.0, 2, 1.0, 0.0, seed=1)) == {1, 4}
    assert draws(make_sampler(1.0, 1, 1.0, 0.0, seed=1)) == {1}


def test_min_p_drops_tokens_far_below_the_best():
    # p(token) / p(best) = exp(logit - 5): 4.9 -> 0.90, 4.5 -> 0.61, 1.0 -> 0.018
    assert draws(make_sampler(1.0, 0, 1.0, 0.5, seed=1)) == {1, 2, 4}
    assert 0 in draws(make_sampler(1.0, 0, 1.0, 0.01, seed=1), n=3000)


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert draws(make_sampler(1.0, 0, 0.3, 0.0, seed=1)) == {1}
    assert draws(make_sampler(1.0, 0, 0.6, 0.0, seed=1)) == {1, 4}


def test_a_seed_fixes_the_sequence_of_draws():
    def sequence(seed):
        sampler = make_sampler(1.5, 0, 1.0, 0.0, seed=seed)
        return [sampler(LOGITS.copy()) for _ in range(50)]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_banned_tokens_are_never_drawn():
    logits = LOGITS.copy()
    logits[[1, 4]] = -np.inf
    sampler = make_sampler(1.0, 0, 1.0, 0.0, seed=1)
    assert all(sampler(logits.copy()) not in (1, 4) for _ in range(300))


def test_logit_bias_adds_to_the_named_tokens():
    biased = make_logit_bias({3: 10.0, 0: -1.0})([], LOGITS.copy())
    assert biased[3] == 8.0 and biased[0] == 0.0 and biased[1] == 5.0


def test_a_large_logit_bias_adds_exactly_what_a_small_one_does():
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    bias = {token: 0.1 * token for token in range(0, 1000, 25)}  # 40 entries: past the one-by-one loop
    expected = logits.copy()
    for token, value in bias.items():
        expected[token] += np.float32(value)
    assert np.array_equal(make_logit_bias(bias)([], logits.copy()), expected)


def test_repeat_penalty_shrinks_recent_tokens_like_llama_cpp():
    penalised = make_repeat_penalty(2.0, last_n=2)([0, 1, 3, 3], LOGITS.copy())
    assert penalised[3] == -4.0  # negative logits are multiplied
    assert penalised[1] == 5.0  # outside the last 2 tokens
    assert make_repeat_penalty(1.0, 64) is None


def test_only_active_processors_are_built():
    assert make_logits_processors(1.0, 64, {}) == []
    assert len(make_logits_processors(1.1, 64, {5: 1.0})) == 2


def test_draws_follow_the_tempered_softmax_of_the_kept_candidates():
    # Five likely tokens among 1,000; min-p keeps them, top-p 0.8 keeps the three likeliest.
    logits = np.full(1000, -20.0, dtype=np.float32)
    likely = [7, 300, 301, 650, 999]
    logits[likely] = [2.0, 1.5, 1.0, 0.5, 0.0]

    def frequencies(top_p, temp):
        sampler = make_sampler(temp, 0, top_p, 0.001, seed=3)
        counts = np.bincount([sampler(logits.copy()) for _ in range(4000)], minlength=1000)
        return counts / counts.sum()

    def expected(kept, temp):
        weights = np.exp(logits[kept] / temp)
        probabilities = np.zeros(1000)
        probabilities[kept] = weights / weights.sum()
        return probabilities

    assert np.abs(frequencies(1.0, 0.7) - expected(likely, 0.7)).max() < 0.03
    assert np.abs(frequencies(0.8, 0.7) - expected(likely[:3], 0.7)).max() < 0.03
    assert np.abs(frequencies(1.0, 2.0) - expected(likely, 2.0)).max() < 0.03


def test_a_large_candidate_set_is_drawn_from():
    # No min-p and no top-k: all 5,000 tokens are candidates, and the draws spread across them.
    logits = np.zeros(5000, dtype=np.float32)
    sampler = make_sampler(1.0, 0, 1.0, 0.0, seed=1)
    assert len({sampler(logits.copy()) for _ in range(500)}) > 400


def kept_by_numpy(logits: np.ndarray, log_min_p: float) -> np.ndarray:
    return (logits >= logits.max() + log_min_p).nonzero()[0]


def kept_by_min_p(logits: np.ndarray, log_min_p: float) -> np.ndarray:
    out = np.zeros(len(logits), dtype=TOKEN_DATA)
    count = min_p(logits, log_min_p, out)
    assert np.array_equal(out["logit"][:count], logits[out["id"][:count]])  # each record holds its logit
    assert not out["p"][:count].any()
    return out["id"][:count]


LOGIT = st.floats(-40, 40, width=32) | st.just(-math.inf)  # -inf: a banned token


@given(logits=arrays(np.float32, st.integers(1, 300), elements=LOGIT),
       log_min_p=st.sampled_from([math.log(p) for p in (0.001, 0.05, 0.5, 1.0)]))
def test_min_p_keeps_what_numpys_comparison_keeps_in_id_order(logits, log_min_p):
    assert np.array_equal(kept_by_min_p(logits, log_min_p), kept_by_numpy(logits, log_min_p))


@pytest.mark.parametrize("n_vocab", [49_152, 50_257, 262_144])  # SmolLM2, GPT-2 (not a multiple of 64), Gemma 3
def test_min_p_finds_the_few_candidates_of_a_large_vocabulary(n_vocab):
    rng = np.random.default_rng(n_vocab)
    logits = rng.normal(0, 1, n_vocab).astype(np.float32)
    logits[rng.integers(0, n_vocab, 40)] += 5.0
    logits[-1] = logits.max()  # the last token ties the best (for GPT-2's size, past the last full block)
    kept = kept_by_min_p(logits, math.log(0.05))
    assert 10 < len(kept) < 200 and kept[-1] == n_vocab - 1
    assert np.array_equal(kept, kept_by_numpy(logits, math.log(0.05)))


def test_min_p_refuses_logits_that_are_not_float32_and_a_short_output():
    with pytest.raises(TypeError, match="float32"):
        min_p(np.zeros(8), -1.0, np.zeros(8, dtype=TOKEN_DATA))
    with pytest.raises(ValueError, match="room"):
        min_p(np.zeros(8, dtype=np.float32), -1.0, np.zeros(7, dtype=TOKEN_DATA))
