"""Replies sampled from a TinyLlama in torch under the engine's own delete rules, and their steps' log-probs.

The rules are backspace_cli.engine.delete_rules, the module the engine runs: a delete removes the last
token from the context, so the next draw comes from the context before it; greedy decoding bans the
deleted token at its position; after max_per_position deletes at a position its token stays; a delete
with nothing to remove is refused and banned there; the delete budget ends the reply. The trainer has
no KV cache: each step recomputes the short sequence. tests/test_training_rollout.py replays rollouts
through the engine to hold the two to the same behaviour.
"""
from dataclasses import dataclass

import torch

from backspace_cli import defaults
from backspace_cli.engine.delete_rules import DELETED, OVER_BUDGET, DeleteRules, ReplyEdits, delete_last
from backspace_cli.engine.events import CONTEXT, DELETE_BUDGET, LENGTH, STOP


@dataclass(frozen=True)
class Rules:
    delete: int  # the delete token
    end: int  # the end-of-generation token
    greedy: bool  # argmax, and a deleted token is banned at its position (the engine's ban_deleted)
    enabled: bool = True  # False bans the delete token everywhere (--no-delete)
    max_tokens: int = defaults.MAX_TOKENS

    @property
    def engine_rules(self) -> DeleteRules:
        return DeleteRules(token_id=self.delete, enabled=self.enabled, ban_deleted=self.greedy)


@dataclass
class Step:
    """One draw: the context it was drawn under, the tokens banned there, and the token drawn."""

    context: tuple[int, ...]
    bans: frozenset[int]
    token: int


class Rollout:
    """One reply being generated: the engine's bookkeeping, and every draw made so far."""

    def __init__(self, prompt: list[int], rules: Rules) -> None:
        self.prompt = list(prompt)
        self.rules = rules
        self._delete_rules = rules.engine_rules
        self._reply = ReplyEdits(self._delete_rules.window)
        self.deletes = 0
        self.steps: list[Step] = []
        self.finish: str | None = None

    @property
    def tokens(self) -> list[int]:
        return self._reply.tokens

    @property
    def context(self) -> list[int]:
        return self.prompt + self.tokens

    def bans(self) -> set[int]:
        return self._reply.bans(self._delete_rules)

    def ended(self, n_ctx: int) -> bool:
        """Whether the reply has ended, checking its length first as the engine does before each draw."""
        if self.finish is None and len(self.tokens) >= self.rules.max_tokens:
            self.finish = LENGTH
        elif self.finish is None and len(self.context) >= n_ctx:
            self.finish = CONTEXT
        return self.finish is not None

    def take(self, token: int, bans: set[int]) -> None:
        self.steps.append(Step(tuple(self.context), frozenset(bans), token))
        reply = self._reply
        if token == self.rules.delete:
            verdict = delete_last(self._delete_rules, reply, self.deletes, token)
            if verdict == OVER_BUDGET:
                self.finish = DELETE_BUDGET
            elif verdict == DELETED:
                self.deletes += 1
        elif token == self.rules.end:
            self.finish = STOP
        else:
            reply.push(token)


def padded(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids, and each sequence's length."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
    return ids, torch.tensor([len(s) for s in sequences])


@torch.no_grad()
def generate(model, prompts: list[list[int]], rules: Rules, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> list[Rollout]:
    """One reply per prompt, generated side by side."""
    n_ctx = model.config.context
    rollouts = [Rollout(prompt, rules) for prompt in prompts]
    was_training = model.training
    model.eval()
    while True:
        live = [r for r in rollouts if not r.ended(n_ctx)]
        if not live:
            break
        ids, lengths = padded([r.context for r in live], rules.end)
        logits = model(ids)[torch.arange(len(live)), lengths - 1].float()
        for rollout, row in zip(live, logits):
            bans = rollout.bans()
            if bans:
                row[list(bans)] = -torch.inf
            if rules.greedy:
                token = int(row.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(row / temperature, -1), 1, generator=generator))
            rollout.take(token, bans)
    model.train(was_training)
    return rollouts


def step_log_probs(model, rollouts: list[Rollout], temperature: float, pad: int) -> list[torch.Tensor]:
    """Each rollout's steps' log-probs (with grad), each under the context the engine had at that step.

    A step's context is a prefix of the context at the next delete (or at the end): between the two,
    tokens are only appended. So one forward pass per delete, plus one, serves every step."""
    leaves, owners = [], []  # owners[i][t]: (leaf index, position in it) of rollout i's step t
    for rollout in rollouts:
        mine, pending = [], []
        for step in rollout.steps:
            pending.append(step)
            if step.token == rollout.rules.delete or step is rollout.steps[-1]:
                leaf = len(leaves)
                leaves.append(list(step.context))
                mine += [(leaf, len(s.context) - 1) for s in pending]
                pending = []
        owners.append(mine)
    ids, _ = padded(leaves, pad)
    logits = model(ids).float() / temperature
    out = []
    for rollout, mine in zip(rollouts, owners):
        rows = torch.stack([logits[leaf, position] for leaf, position in mine])
        banned = torch.zeros(rows.shape, dtype=torch.bool)
        for t, step in enumerate(rollout.steps):
            banned[t, list(step.bans)] = True
        rows = rows.masked_fill(banned, -torch.inf)
        tokens = torch.tensor([step.token for step in rollout.steps])
        out.append(torch.log_softmax(rows, -1).gather(1, tokens[:, None])[:, 0])
    return out
