"""The trainer's rollouts (training/rollout.py) behave as the engine does: replayed through the engine on
the exported GGUF, a sampled trajectory, deletes included, gives the same text, context and bans."""
import sys
from pathlib import Path

import numpy as np
import pytest

from backspace_cli.engine.engine import DeleteRules, Engine
from backspace_cli.engine.events import Done
from backspace_cli.engine.model import load_model

torch = pytest.importorskip("torch")
TRAINING = Path(__file__).resolve().parent.parent / "training"
sys.path.insert(0, str(TRAINING))

import export_gguf  # noqa: E402
import rollout  # noqa: E402
import train  # noqa: E402
import vocab  # noqa: E402
from tiny_llama import Config, TinyLlama  # noqa: E402

MAX_TOKENS = 12
# A few tokens the random model may write, the delete token among them; the rest are all but banned.
WRITABLE = [train.DELETE, train.EOS] + [train.IDS[c] for c in "0123456789+"] + train.encode("12 17")


def delete_happy(path, delete_bias):
    """A random TinyLlama that writes digits and deletes often: a constant feature in every embedding
    acts, through the output matrix, as a bias towards the writable tokens and the delete token."""
    torch.manual_seed(0)
    model = TinyLlama(Config(n_vocab=vocab.N_VOCAB, n_embd=32, n_layer=2, n_head=4, n_head_kv=4, n_ff=64,
                             context=96))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
        model.embed.weight.normal_(0.0, 1.0)
        model.embed.weight[:, 0] = 5.0
        model.norm.weight.fill_(1.0)
        model.output.weight.normal_(0.0, 1.0)
        model.output.weight[:, 0] = -10.0
        model.output.weight[WRITABLE, 0] = 0.0
        model.output.weight[train.DELETE, 0] = delete_bias
        model.output.weight[train.EOS, 0] = -1.0
    export_gguf.export_model(model, path)
    return model.eval(), load_model(path, n_ctx=96, n_threads=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """By greedy: a greedy rollout deletes only where the delete token is the likeliest."""
    folder = tmp_path_factory.mktemp("rollout")
    return {False: delete_happy(folder / "sampled.gguf", 2.0), True: delete_happy(folder / "greedy.gguf", 2.0)}


def trajectories(model, greedy):
    prompts = [train.prompt_ids([], f"Which two of {a} 12 35 add up to 47?") for a in range(10, 22)]
    rules = rollout.Rules(delete=train.DELETE, end=train.EOS, greedy=greedy, max_tokens=MAX_TOKENS)
    if greedy:  # greedy decoding of a fixed model is one search per prompt: vary the models' prompts
        return rollout.generate(model, prompts, rules)
    return rollout.generate(model, prompts, rules, temperature=1.0, generator=torch.Generator().manual_seed(1))


class Replay:
    """A sampler that returns a trajectory's tokens in order, and checks what the engine offered it."""

    def __init__(self, model, run):
        self.model, self.steps = model, list(run.steps)

    def __call__(self, logits):
        step = self.steps.pop(0)
        banned = set(np.flatnonzero(np.isneginf(logits)).tolist())
        assert banned == set(step.bans)
        with torch.no_grad():
            ours = self.model(torch.tensor([step.context]))[0, -1].numpy()
        finite = ~np.isneginf(logits)
        assert np.abs(logits[finite] - ours[finite]).max() < 0.05  # the same context (another moves them by whole units)
        return step.token


@pytest.mark.parametrize("greedy", [False, True], ids=["sampled", "greedy"])
def test_a_replayed_trajectory_gives_the_engines_text_context_and_bans(models, greedy):
    model, gguf_model = models[greedy]
    runs = trajectories(model, greedy)
    assert sum(run.deletes for run in runs) >= 10  # deletes, not just appends, are what this checks
    for run in runs:
        engine = Engine(gguf_model)
        replay = Replay(model, run)
        rules = DeleteRules(token_id=train.DELETE, ban_deleted=greedy)
        events = list(engine.generate(run.prompt, sampler=replay, rules=rules, max_tokens=MAX_TOKENS))
        done = events[-1]
        assert isinstance(done, Done)
        assert replay.steps == []  # every draw the trainer made, the engine asked for
        assert done.text == train.decode(run.tokens)
        assert engine.sequence.tokens == run.context
        assert done.counts.deletes == run.deletes
        assert done.finish_reason == run.finish


def test_a_sampled_trajectory_hits_the_limits_the_engine_applies(models):
    """The fixture's model is delete-happy enough to reach the refusals and the per-position limit."""
    model, _ = models[False]
    steps = [step for run in trajectories(model, greedy=False) for step in run.steps]
    assert any(train.DELETE in step.bans for step in steps)


def test_step_log_probs_are_those_of_each_steps_own_context(models):
    model, _ = models[False]
    runs = trajectories(model, greedy=False)[:6]
    got = rollout.step_log_probs(model, runs, temperature=1.0, pad=train.EOS)
    with torch.no_grad():
        for run, log_probs in zip(runs, got):
            for step, log_prob in zip(run.steps, log_probs):
                logits = model(torch.tensor([step.context]))[0, -1]
                logits[list(step.bans)] = -torch.inf
                assert torch.isclose(log_prob, torch.log_softmax(logits, -1)[step.token], atol=1e-5)
