"""The trainer's rollouts follow the engine's delete rules: replayed through the engine on the exported GGUF, every
rollout, deletes included, gives the same draws, bans, final tokens, text and finish."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from backspace_cli.engine.delete_rules import DeleteRules  # noqa: E402
from backspace_cli.engine.engine import Engine  # noqa: E402
from backspace_cli.engine.events import Done  # noqa: E402
from backspace_cli.engine.model import load_model  # noqa: E402
from backspace_cli.train.model_setup import load_bundle  # noqa: E402
from backspace_cli.train.rollout import roll_out  # noqa: E402
from backspace_cli.train.stages import draw_log_probs  # noqa: E402
from backspace_cli.train.tasks import TrainTask  # noqa: E402

from train_models import SMALL_LLAMA, letter_tasks, needs_converter, write_small_config  # noqa: E402

pytestmark = needs_converter
MAX_TOKENS = 14


@pytest.fixture(scope="module")
def delete_happy(tmp_path_factory):
    """A random small Llama whose output layer favours the delete token and a few letters, exported to GGUF."""
    from backspace_convert.hf_checkpoint import convert_checkpoint

    folder = tmp_path_factory.mktemp("rollout")
    tasks = letter_tasks(20)
    texts = [t["prompt"] for t in tasks] + [t["answer"] for t in tasks]
    bundle = load_bundle(None, str(write_small_config(folder / "config.json")), None, texts, seed=0)
    model, vocab = bundle.model, bundle.tokenizer.get_vocab()
    writable = [vocab[c] for c in "abcdefg" if c in vocab]
    scale = SMALL_LLAMA["hidden_size"] ** -0.5  # a constant feature comes out of the final norm this big
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 5.0  # a constant feature in every position's residual stream
        head = model.lm_head.weight
        head[:, 0] = -10.0 * scale  # through it, a bias: against every token but a few letters,
        head[writable, 0] = 0.0
        head[bundle.delete_id, 0] = 0.6 * scale  # for the delete token,
        head[bundle.reply_end, 0] = -1.0 * scale  # and a little against ending
    model.eval()
    model.save_pretrained(folder / "hf")
    bundle.tokenizer.save_pretrained(folder / "hf")
    path = convert_checkpoint(folder / "hf", folder / "model.gguf", outtype="f32")
    prompts = [bundle.prompt_ids(TrainTask((("user", t["prompt"]),), (t["answer"],))) for t in tasks[:12]]
    return bundle, load_model(str(path), n_ctx=SMALL_LLAMA["max_position_embeddings"], n_threads=1), prompts


def rollouts(bundle, prompts, greedy):
    rules = DeleteRules(token_id=bundle.delete_id, ban_deleted=greedy, max_per_position=2, max_deletes=6)
    generator = torch.Generator().manual_seed(1)
    return rules, [roll_out(bundle.model, prompt, rules, bundle.end_ids, max_tokens=MAX_TOKENS,
                            temperature=0.0 if greedy else 1.0, generator=generator) for prompt in prompts]


class Replay:
    """A sampler that gives the engine a rollout's draws in order, checking the logits and bans it is offered."""

    def __init__(self, bundle, run):
        self.bundle, self.run, self.draws = bundle, run, list(run.draws)

    def __call__(self, logits):
        draw = self.draws.pop(0)
        assert set(np.flatnonzero(np.isneginf(logits)).tolist()) == set(draw.bans)
        with torch.no_grad():
            ours = self.bundle.model(input_ids=torch.tensor([self.run.prompt + list(draw.reply)])).logits[0, -1]
        finite = ~np.isneginf(logits)
        assert np.abs(logits[finite] - ours.numpy()[finite]).max() < 1e-3  # the same context, in llama.cpp
        return draw.token


@pytest.mark.parametrize("greedy", [False, True], ids=["sampled", "greedy"])
def test_rollouts_replayed_through_the_engine_give_the_same_draws_deletes_and_text(delete_happy, greedy):
    bundle, gguf_model, prompts = delete_happy
    rules, runs = rollouts(bundle, prompts, greedy)
    assert sum(run.deletes for run in runs) >= 5  # deletes, not only appends, are what this checks
    for run in runs:
        engine = Engine(gguf_model)
        replay = Replay(bundle, run)
        events = list(engine.generate(run.prompt, sampler=replay, rules=rules, max_tokens=MAX_TOKENS))
        done = events[-1]
        assert isinstance(done, Done)
        assert replay.draws == []  # every draw the trainer made, the engine asked for
        assert engine.sequence.tokens[len(run.prompt):] == run.tokens
        assert done.text == bundle.text(run.tokens)
        assert done.counts.deletes == run.deletes
        assert done.finish_reason == run.finish


def test_sampled_rollouts_reach_the_limits_the_rules_set(delete_happy):
    bundle, _, prompts = delete_happy
    _, runs = rollouts(bundle, prompts, greedy=False)
    assert any(bundle.delete_id in draw.bans for run in runs for draw in run.draws)  # a refused or spent delete


def test_each_draws_log_prob_is_taken_under_its_own_context_and_bans(delete_happy):
    bundle, _, prompts = delete_happy
    _, runs = rollouts(bundle, prompts[:6], greedy=False)
    got = draw_log_probs(bundle.model, runs, temperature=1.0, pad=bundle.reply_end)
    with torch.no_grad():
        for run, log_probs in zip(runs, got):
            for draw, log_prob in zip(run.draws, log_probs):
                logits = bundle.model(input_ids=torch.tensor([run.prompt + list(draw.reply)])).logits[0, -1]
                logits[list(draw.bans)] = -torch.inf
                assert torch.isclose(log_prob, torch.log_softmax(logits, -1)[draw.token], atol=1e-4)


def test_the_trainers_prompts_are_the_engines_on_the_exported_model(delete_happy):
    from backspace_cli.engine.prompt import prompt_tokens

    bundle, gguf_model, _ = delete_happy
    for task in letter_tasks(6):
        train_task = TrainTask((("user", task["prompt"]),), (task["answer"],))
        assert bundle.prompt_ids(train_task) == prompt_tokens(gguf_model, train_task.chat())
        answer = bundle.answer_ids(train_task, task["answer"])
        prompt = bundle.prompt_ids(train_task)
        chat = prompt_tokens(gguf_model, train_task.chat() + [{"role": "assistant", "content": task["answer"]}])
        assert chat[len(prompt): len(prompt) + len(answer) + 1] == answer + [bundle.reply_end]
