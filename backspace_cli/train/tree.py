"""Engine states packed into one sequence as a tree: every token attends to its own branch only.

After a delete the engine's context is the one before the deleted token, so the states of one question
share prefixes and branch where a reply went another way. Packing them as a trie, with each token's
position and a mask of its ancestors, gives every branch exactly the context the engine had, in one
forward pass, with no state repeated.
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data.labels import IGNORE


@dataclass
class TokenTree:
    """A trie of token sequences that share a root (the prompt), with a target to learn at some nodes."""

    input_ids: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # -1: the root's first token
    # What the context ending at each node learns to predict: targets and their weights in the loss
    # (a state can learn two, such as going on and deleting).
    targets: list[dict[int, float]] = field(default_factory=list)
    _children: dict[tuple[int, int], int] = field(default_factory=dict)

    @classmethod
    def rooted(cls, prompt: Sequence[int]) -> "TokenTree":
        tree = cls()
        tree.node([], prompt)
        return tree

    def node(self, path: Sequence[int], more: Sequence[int] = ()) -> int:
        """The node of the context that is the root followed by `path` and `more`, made where missing."""
        node = -1
        for token in (*path, *more):
            child = self._children.get((node, token))
            if child is None:
                child = self._children[node, token] = len(self.input_ids)
                self.input_ids.append(token)
                self.parents.append(node)
                self.targets.append({})
            node = child
        return node

    def learn(self, node: int, target: int, weight: float = 1.0) -> None:
        """The context ending at `node` learns `target` with this weight; a later call for the same target wins."""
        self.targets[node][target] = weight

    def context_node(self, prompt_length: int, reply: Sequence[int]) -> int:
        """The node of the prompt (its first `prompt_length` tokens form the root chain) and `reply`."""
        return self.node(self.input_ids[:prompt_length], reply)

    def __len__(self) -> int:
        return len(self.input_ids)


def positions_and_mask(parents: Sequence[int]) -> tuple[list[int], torch.Tensor]:
    """Each node's position (its depth) and a (n, n) boolean mask: row i is i's ancestors and itself."""
    n = len(parents)
    mask = torch.zeros((n, n), dtype=torch.bool)
    positions = [0] * n
    for i, parent in enumerate(parents):
        if parent >= 0:
            mask[i] = mask[parent]
            positions[i] = positions[parent] + 1
        mask[i, i] = True
    return positions, mask


def collate(trees: Sequence[TokenTree], pad: int) -> dict[str, torch.Tensor]:
    """A batch for a transformers causal LM under SDPA attention: input_ids, position_ids, a 4-D boolean
    attention mask (True where a token may look), and each node's targets with their weights, (batch,
    width, most targets at a node), IGNORE where there is none. transformers uses a 4-D mask as it is
    given, so the tree's branches stay apart."""
    width = max(len(tree) for tree in trees)
    batch = len(trees)
    most = max([len(targets) for tree in trees for targets in tree.targets] + [1])
    input_ids = torch.full((batch, width), pad, dtype=torch.long)
    position_ids = torch.zeros((batch, width), dtype=torch.long)
    allowed = torch.zeros((batch, width, width), dtype=torch.bool)
    labels = torch.full((batch, width, most), IGNORE, dtype=torch.long)
    weights = torch.zeros((batch, width, most), dtype=torch.float32)
    for row, tree in enumerate(trees):
        n = len(tree)
        positions, mask = positions_and_mask(tree.parents)
        input_ids[row, :n] = torch.tensor(tree.input_ids)
        position_ids[row, :n] = torch.tensor(positions)
        allowed[row, :n, :n] = mask
        for node, targets in enumerate(tree.targets):
            labels[row, node, : len(targets)] = torch.tensor(list(targets), dtype=torch.long)
            weights[row, node, : len(targets)] = torch.tensor(list(targets.values()))
        allowed[row, range(n, width), range(n, width)] = True  # padding sees itself, so no row is empty
    return {"input_ids": input_ids, "position_ids": position_ids, "attention_mask": allowed[:, None],
            "labels": labels, "weights": weights}
