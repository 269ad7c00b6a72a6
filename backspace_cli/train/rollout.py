"""Replies sampled from a transformers model under the engine's own delete rules, with a KV cache that a delete crops.

The rules are backspace_cli.engine.delete_rules, the module the engine itself runs: a delete takes the
last token back, its cache entry included, and the next draw comes from the logits saved before it.
"""
from dataclasses import dataclass, field

import torch

from ..engine.delete_rules import DELETED, OVER_BUDGET, DeleteRules, ReplyEdits, delete_last
from ..engine.events import CONTEXT, DELETE_BUDGET, LENGTH, STOP


@dataclass(frozen=True)
class Draw:
    """One draw: the reply before it (the engine's context less the prompt), what was banned, what came."""

    reply: tuple[int, ...]
    bans: frozenset[int]
    token: int


@dataclass
class Rollout:
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)  # the final reply
    draws: list[Draw] = field(default_factory=list)
    deletes: int = 0
    finish: str = STOP


@torch.no_grad()
def roll_out(model, prompt: list[int], rules: DeleteRules, end_ids: frozenset[int], *, max_tokens: int,
             temperature: float, generator: torch.Generator | None = None) -> Rollout:
    """One reply, greedy at temperature 0, else sampled from softmax(logits / temperature)."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    n_ctx = model.config.max_position_embeddings
    cache = DynamicCache()
    out = model(input_ids=torch.tensor([prompt], device=device), past_key_values=cache, use_cache=True)
    saved = {0: out.logits[0, -1].float()}  # the logits after each length of the reply, under its prefix
    reply, run = ReplyEdits(rules.window), Rollout(list(prompt))
    while True:
        length = len(reply.tokens)
        if length >= max_tokens:
            run.finish = LENGTH
            break
        if len(prompt) + length >= n_ctx:
            run.finish = CONTEXT
            break
        logits = saved[length].clone()
        bans = reply.bans(rules)
        if bans:
            logits[list(bans)] = -torch.inf
        if temperature == 0:
            token = int(logits.argmax())
        else:
            probabilities = torch.softmax(logits / temperature, -1).cpu()
            token = int(torch.multinomial(probabilities, 1, generator=generator))
        run.draws.append(Draw(tuple(reply.tokens), frozenset(bans), token))
        if token == rules.token_id:
            verdict = delete_last(rules, reply, run.deletes, token)
            if verdict == OVER_BUDGET:
                run.finish = DELETE_BUDGET
                break
            if verdict == DELETED:
                run.deletes += 1
                cache.crop(-1)  # the deleted token's entry, the newest
            continue
        if token in end_ids:
            run.finish = STOP
            break
        reply.push(token)
        out = model(input_ids=torch.tensor([[token]], device=device), past_key_values=cache, use_cache=True)
        saved[len(reply.tokens)] = out.logits[0, -1].float()
    run.tokens = list(reply.tokens)
    return run
