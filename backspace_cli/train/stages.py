"""The stages' trainers: transformers' Trainer on packed trees (sft, own), and GRPO on true-rollback rollouts (grpo).

Each overrides compute_loss only, so checkpoints, resuming, schedules, mixed precision and
`accelerate launch` are the Trainer's own. A tree's target sits at its own node, not one to the right,
so the Trainer's shifted causal-LM loss does not apply.
"""
import copy
from dataclasses import dataclass

import torch
from transformers import Trainer

from backspace_convert.errors import UserError

from ..engine.delete_rules import DeleteRules
from .model_setup import ModelBundle
from .recipe import TrainRecipe
from .rollout import Rollout, roll_out
from .tasks import Scorer, TrainTask
from .tree import IGNORE, TokenTree, collate


def model_inputs(batch: dict, device) -> dict:
    return {name: batch[name].to(device) for name in ("input_ids", "position_ids", "attention_mask")}


class CheckpointWriteError(UserError):
    """A checkpoint could not be written whole (a full disk): the ones before it stay."""


class StageTrainer(Trainer):
    """transformers' Trainer, whose checkpoint writes fail as one error of ours (torch.save raises
    RuntimeError, not OSError, when the disk fills)."""

    def _save_checkpoint(self, model, trial) -> None:
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            reason = getattr(error, "strerror", None) or " ".join(str(error).split())[:120]
            raise CheckpointWriteError(f"checkpoint {self.state.global_step} could not be written ({reason})") from None


class TreeTrainer(StageTrainer):
    """Supervised on packed trees: each node learns its targets, weighted; the loss is a mean over the
    nodes that learn something."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, weights = inputs["labels"], inputs["weights"]
        logits = model(**model_inputs(inputs, labels.device)).logits.float()
        log_probs = torch.log_softmax(logits, -1).gather(2, labels.clamp(min=0))
        learned = labels != IGNORE
        nodes = learned.any(-1).sum().clamp(min=1)
        return -(log_probs * weights * learned).sum() / nodes


@dataclass
class RolloutStats:
    reward: float
    score: float
    deletes: float


class GroupTrainer(StageTrainer):
    """GRPO: a group of sampled replies per question, each made under the engine's delete rules; the
    reward is the task's score less a cost per delete, standardised within the group; a KL term holds
    the model near the one the stage began with. Each draw's log-prob is taken under the context the
    engine had when it was drawn, which a tree of the reply's contexts gives in one pass."""

    def __init__(self, *args, bundle: ModelBundle, recipe: TrainRecipe, scorer: Scorer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bundle, self.recipe, self.scorer = bundle, recipe, scorer
        self.reference = copy.deepcopy(bundle.model).eval()
        for parameter in self.reference.parameters():
            parameter.requires_grad_(False)
        self.rules = DeleteRules(token_id=bundle.delete_id, enabled=recipe.deletes)
        self.stats: list[RolloutStats] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        recipe, bundle = self.recipe, self.bundle
        tasks: list[TrainTask] = inputs
        policy = self.accelerator.unwrap_model(model)
        was_training = policy.training
        policy.eval()
        runs, rewards = [], []
        for task in tasks:
            prompt = bundle.prompt_ids(task)
            for _ in range(recipe.grpo_group):
                run = roll_out(policy, prompt, self.rules, bundle.end_ids, max_tokens=recipe.max_tokens,
                               temperature=recipe.grpo_temperature)
                score = self.scorer(bundle.text(run.tokens), task)
                runs.append(run)
                rewards.append((score - recipe.delete_cost * run.deletes, score, run.deletes))
        policy.train(was_training)
        reward = torch.tensor([r for r, _, _ in rewards]).view(len(tasks), recipe.grpo_group)
        advantage = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-4)).view(-1)
        self.stats.append(RolloutStats(reward.mean().item(), sum(s for _, s, _ in rewards) / len(rewards),
                                       sum(d for _, _, d in rewards) / len(rewards)))
        log_probs = draw_log_probs(model, runs, recipe.grpo_temperature, bundle.reply_end)
        with torch.no_grad():
            reference = draw_log_probs(self.reference, runs, recipe.grpo_temperature, bundle.reply_end)
        total, draws = 0.0, 0
        for a, mine, theirs in zip(advantage.to(log_probs[0].device), log_probs, reference):
            gap = theirs - mine
            kl = torch.exp(gap) - gap - 1  # the k3 estimator of KL(policy || reference), per draw
            total = total + (-a * mine + recipe.kl * kl).sum()
            draws += len(mine)
        return total / max(1, draws)

    def log(self, logs: dict, *args, **kwargs) -> None:
        if self.stats:
            for name in ("reward", "score", "deletes"):
                logs[name] = round(sum(getattr(s, name) for s in self.stats) / len(self.stats), 4)
            self.stats = []
        super().log(logs, *args, **kwargs)


def draw_log_probs(model, runs: list[Rollout], temperature: float, pad: int) -> list[torch.Tensor]:
    """Each rollout's draws' log-probs, each under the context and the bans it was drawn with."""
    trees, nodes = [], []
    for run in runs:
        tree = TokenTree.rooted(run.prompt)
        nodes.append([tree.context_node(len(run.prompt), draw.reply) for draw in run.draws])
        trees.append(tree)
    device = next(model.parameters()).device
    logits = model(**model_inputs(collate(trees, pad), device)).logits.float() / temperature
    out = []
    for row, (run, mine) in enumerate(zip(runs, nodes)):
        rows = logits[row, mine]
        banned = torch.zeros(rows.shape, dtype=torch.bool, device=device)
        for t, draw in enumerate(run.draws):
            banned[t, list(draw.bans)] = True
        tokens = torch.tensor([draw.token for draw in run.draws], device=device)
        out.append(torch.log_softmax(rows.masked_fill(banned, -torch.inf), -1).gather(1, tokens[:, None])[:, 0])
    return out
