"""Samplers and logits processors: what each setting keeps, and that a seed fixes the draw."""
import numpy as np

from backspace_cli.sampling import greedy, make_logit_bias, make_logits_processors, make_repeat_penalty, make_sampler

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


def test_few_and_many_candidates_are_drawn_from_the_same_distribution(monkeypatch):
    import backspace_cli.sampling as sampling

    # Five likely tokens among 1,000 (so the many-candidate path runs without truncation).
    logits = np.full(1000, -20.0, dtype=np.float32)
    logits[[7, 300, 301, 650, 999]] = [2.0, 1.5, 1.0, 0.5, 0.0]

    def frequencies(few_limit, top_p):
        monkeypatch.setattr(sampling, "FEW_CANDIDATES", few_limit)
        sampler = make_sampler(0.7, 0, top_p, 0.0 if few_limit == 0 else 0.001, seed=3)
        counts = np.bincount([sampler(logits.copy()) for _ in range(4000)], minlength=1000)
        return counts / counts.sum()

    for top_p in (1.0, 0.8):
        many, few = frequencies(0, top_p), frequencies(64, top_p)
        assert np.abs(many - few).max() < 0.03
        assert set(np.flatnonzero(few)) <= {7, 300, 301, 650, 999}
    assert frequencies(64, 0.8)[[650, 999]].sum() == 0  # top-p 0.8 keeps the three likeliest
