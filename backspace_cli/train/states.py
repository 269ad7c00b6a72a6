"""The engine states a question is trained on: live replies learn the way on, dead ones learn the delete.

A reply is alive while its text can still become a right answer, and dead from the token that makes it
leave every one. A live state learns the reference answer's next token; a dead state learns the delete
token, after which the engine is back in the live state before it.
"""
from collections.abc import Iterable, Sequence

import torch

from .model_setup import ModelBundle
from .tasks import TrainTask
from .tree import TokenTree, collate

Reply = tuple[int, ...]


def alive(bundle: ModelBundle, task: TrainTask, reply: Sequence[int]) -> bool:
    """Whether the reply so far can still become one of the task's answers (leading spaces aside, as a
    reply is scored stripped)."""
    text = bundle.text(list(reply)).lstrip()
    return any(answer.startswith(text) for answer in task.answers)


def question_tree(bundle: ModelBundle, task: TrainTask, dead: Iterable[Reply], delete_weight: float) -> TokenTree:
    """One question's states, packed: the reference answer, each of its prefixes learning the next token
    and the whole learning the reply's end, and each dead reply learning the delete."""
    prompt = bundle.prompt_ids(task)
    tree = TokenTree.rooted(prompt)
    answer = bundle.answer_ids(task, task.answers[0]) + [bundle.reply_end]
    for k, token in enumerate(answer):
        tree.learn(tree.context_node(len(prompt), answer[:k]), token)
    for reply in sorted(set(dead)):
        tree.learn(tree.context_node(len(prompt), reply), bundle.delete_id, delete_weight)
    return tree


@torch.no_grad()
def likeliest_wrong(bundle: ModelBundle, tasks: Sequence[TrainTask], per_state: int, batch: int = 16,
                    label: str = "likeliest mistakes") -> list[set[Reply]]:
    """For each task, the dead replies that the model's `per_state` likeliest wrong tokens make at each
    live state of the reference answer: the mistakes it is closest to making."""
    from tqdm.auto import tqdm

    model = bundle.model
    was_training = model.training
    model.eval()
    banned = set(bundle.end_ids) | {bundle.delete_id}
    out = []
    for start in tqdm(range(0, len(tasks), batch), desc=label, unit="batch", dynamic_ncols=True):
        chunk = tasks[start : start + batch]
        trees = [question_tree(bundle, task, (), 1.0) for task in chunk]
        inputs = collate(trees, bundle.reply_end)
        device = next(model.parameters()).device
        logits = model(input_ids=inputs["input_ids"].to(device), position_ids=inputs["position_ids"].to(device),
                       attention_mask=inputs["attention_mask"].to(device)).logits.float().cpu()
        for row, (task, tree) in enumerate(zip(chunk, trees)):
            prompt_length = len(bundle.prompt_ids(task))
            answer = bundle.answer_ids(task, task.answers[0])
            dead: set[Reply] = set()
            for k in range(len(answer) + 1):
                node = tree.context_node(prompt_length, answer[:k])
                ranked = logits[row, node].argsort(descending=True).tolist()
                found = 0
                for token in ranked[: per_state * 8]:
                    reply = (*answer[:k], token)
                    if token in banned or alive(bundle, task, reply):
                        continue
                    dead.add(reply)
                    found += 1
                    if found == per_state:
                        break
            out.append(dead)
    model.train(was_training)
    return out
