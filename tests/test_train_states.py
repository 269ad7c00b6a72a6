"""The states a question is trained on: the answer's prefixes learn the way on; a wrong reply learns to look, then
delete, from where it leaves every answer; a state that learns two targets is pulled toward each by its weight."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from backspace_cli.train.model_setup import load_bundle  # noqa: E402
from backspace_cli.train.stages import TreeTrainer  # noqa: E402
from backspace_cli.train.states import alive, question_tree  # noqa: E402
from backspace_cli.train.tasks import TrainTask  # noqa: E402
from backspace_cli.train.tree import TokenTree, collate  # noqa: E402

from train_models import letter_tasks, write_small_config  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tasks = letter_tasks(20)
    texts = [t["prompt"] for t in tasks] + [t["answer"] for t in tasks]
    config = write_small_config(tmp_path_factory.mktemp("states") / "small.json")
    return load_bundle(None, str(config), None, texts, seed=0)


def learned(bundle, tree: TokenTree, prompt: list[int], reply) -> dict[int, float]:
    """What the state of `reply` learns in the tree."""
    return tree.targets[tree.context_node(len(prompt), list(reply))]


def spelled(bundle, text: str) -> list[int]:
    return bundle.tokenizer(text, add_special_tokens=False)["input_ids"]


TASK = TrainTask((("user", "Reverse cat"),), ("tac",))


def test_each_prefix_of_the_answer_learns_its_next_token_and_the_whole_answer_learns_the_end(bundle):
    prompt, answer = bundle.prompt_ids(TASK), bundle.answer_ids(TASK, "tac")
    tree = question_tree(bundle, TASK, (), 1.0, 0.7, 8)
    for k, token in enumerate(answer):
        assert learned(bundle, tree, prompt, answer[:k]) == {token: 1.0}
    assert learned(bundle, tree, prompt, answer) == {bundle.reply_end: 1.0}


def test_a_wrong_reply_goes_on_before_it_deletes_and_its_whole_learns_the_delete(bundle):
    prompt, delete = bundle.prompt_ids(TASK), bundle.delete_id
    wrong = tuple(bundle.answer_ids(TASK, "tic"))  # leaves the answer where "i" is written
    leaves = next(k for k in range(1, len(wrong) + 1) if not alive(bundle, TASK, wrong[:k]))
    tree = question_tree(bundle, TASK, [wrong], 0.5, 0.7, 8)
    for k in range(leaves, len(wrong)):
        assert learned(bundle, tree, prompt, wrong[:k]) == pytest.approx({wrong[k]: 0.35, delete: 0.15})
    assert learned(bundle, tree, prompt, wrong) == {delete: 0.5}
    assert delete not in learned(bundle, tree, prompt, wrong[: leaves - 1])  # a live state never learns it


def test_look_ahead_bounds_how_far_a_wrong_reply_goes_on_and_zero_deletes_at_once(bundle):
    prompt, delete = bundle.prompt_ids(TASK), bundle.delete_id
    wrong = tuple(spelled(bundle, "x")) + tuple(bundle.answer_ids(TASK, "tac"))  # wrong from its first token
    assert len(wrong) > 2
    one_more = question_tree(bundle, TASK, [wrong], 1.0, 0.7, 1)
    assert learned(bundle, one_more, prompt, wrong[:1]) == pytest.approx({wrong[1]: 0.7, delete: 0.3})
    assert learned(bundle, one_more, prompt, wrong[:2]) == {delete: 1.0}
    assert len(one_more) == len(prompt) + len(bundle.answer_ids(TASK, "tac")) + 2  # nothing past it
    at_once = question_tree(bundle, TASK, [wrong], 1.0, 0.7, 0)
    assert learned(bundle, at_once, prompt, wrong[:1]) == {delete: 1.0}


def test_a_reply_that_stays_alive_is_not_taught_to_delete(bundle):
    tree = question_tree(bundle, TASK, [tuple(bundle.answer_ids(TASK, "ta"))], 1.0, 0.7, 8)
    assert all(bundle.delete_id not in targets for targets in tree.targets)


def test_a_state_learning_two_targets_is_pulled_toward_each_by_its_weight():
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=20, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=16,
                                      attn_implementation="sdpa")
    model = transformers.LlamaForCausalLM(config)
    tree = TokenTree.rooted([1, 2, 3])
    node = tree.context_node(3, [])
    tree.learn(node, 7, 0.7)
    tree.learn(node, 9, 0.3)
    batch = collate([tree], 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        TreeTrainer.compute_loss(None, model, batch).backward()
        optimizer.step()
    with torch.no_grad():
        p = torch.softmax(model(input_ids=torch.tensor([[1, 2, 3]])).logits[0, -1], -1)
    assert p[7].item() == pytest.approx(0.7, abs=0.05) and p[9].item() == pytest.approx(0.3, abs=0.05)
