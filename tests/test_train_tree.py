"""A question's engine states packed as one tree: every branch's logits are exactly those of its own forward pass."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from backspace_cli.train.tree import IGNORE, TokenTree, collate  # noqa: E402

PAD = 0


def random_llama(vocab: int = 50) -> "transformers.LlamaForCausalLM":
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      attn_implementation="sdpa")
    return transformers.LlamaForCausalLM(config).eval()


def own_logits(model, context: list[int]) -> torch.Tensor:
    """The logits after `context`, computed alone, as a plain causal sequence."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([context])).logits[0, -1]


def packed_logits(model, trees: list[TokenTree]) -> torch.Tensor:
    batch = collate(trees, PAD)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                     attention_mask=batch["attention_mask"]).logits


def test_every_branch_of_a_packed_tree_sees_exactly_its_own_context():
    model = random_llama()
    prompt = [5, 9, 3, 7]
    branches = [[], [11], [11, 12], [11, 12, 13], [11, 14], [15], [15, 16, 17, 18], [11, 12, 19]]
    tree = TokenTree.rooted(prompt)
    nodes = [tree.context_node(len(prompt), branch) for branch in branches]
    small = TokenTree.rooted([5, 8])  # a shorter tree in the same batch: padding must not leak in
    small_node = small.context_node(2, [20, 21])
    logits = packed_logits(model, [tree, small])
    for branch, node in zip(branches, nodes):
        torch.testing.assert_close(logits[0, node], own_logits(model, prompt + branch), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[1, small_node], own_logits(model, [5, 8, 20, 21]), rtol=1e-4, atol=1e-4)


def test_a_tree_shares_prefixes_and_learns_at_the_node_of_each_context():
    tree = TokenTree.rooted([1, 2])
    tree.learn(tree.context_node(2, []), 7)
    tree.learn(tree.context_node(2, [7]), 8)
    tree.learn(tree.context_node(2, [9]), 3, weight=0.5)
    assert tree.input_ids == [1, 2, 7, 9]  # the prompt once, then each branch's own token
    assert tree.parents == [-1, 0, 1, 1]  # 7 and 9 both follow the prompt
    tree.learn(tree.context_node(2, [9]), 4, weight=0.25)  # a state may learn two targets
    assert tree.targets == [{}, {7: 1.0}, {8: 1.0}, {3: 0.5, 4: 0.25}]
    batch = collate([tree], PAD)
    assert batch["labels"].tolist() == [[[IGNORE, IGNORE], [7, IGNORE], [8, IGNORE], [3, 4]]]
    assert batch["weights"].tolist() == [[[0, 0], [1, 0], [1, 0], [0.5, 0.25]]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 2]]  # siblings share the position the engine gives them
    assert not batch["attention_mask"][0, 0, 3, 2]  # a branch never sees its sibling
