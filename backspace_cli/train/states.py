"""The engine states a question is trained on: live replies learn the way on, wrong ones learn to look, then delete.

A reply is alive while its text can still become a right answer, and dead from the token that makes it
leave every one. A live state learns the reference answer's next token. A wrong reply is learned whole,
from where it leaves every answer: its states before its end learn both to go on with it and to delete,
and the whole reply learns the delete. A mistake is easier to see once the reply is written out (a sum
written down is checked with one look-up, where choosing its first number was a search); and once the
engine has deleted and banned the last token, the delete is the next choice at each state before it, so
greedy decoding backs out to the live state and tries its next candidate there.
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


def question_tree(bundle: ModelBundle, task: TrainTask, wrong: Iterable[Reply], delete_weight: float,
                  go_on_share: float, look_ahead: int) -> TokenTree:
    """One question's states, packed: the reference answer, each of its prefixes learning the next token
    and the whole learning the reply's end; and each wrong reply from where it leaves every answer, up to
    `look_ahead` tokens further or its end, its states before that learning to go on with it
    (`go_on_share` of `delete_weight`) and to delete (the rest), and the last learning the delete."""
    prompt = bundle.prompt_ids(task)
    tree = TokenTree.rooted(prompt)
    answer = bundle.answer_ids(task, task.answers[0]) + [bundle.reply_end]
    for k, token in enumerate(answer):
        tree.learn(tree.context_node(len(prompt), answer[:k]), token)
    for reply in sorted(set(wrong)):
        leaves = next((k for k in range(1, len(reply) + 1) if not alive(bundle, task, reply[:k])), None)
        if leaves is None:
            continue
        end = min(len(reply), leaves + look_ahead)
        for k in range(leaves, end):
            node = tree.context_node(len(prompt), reply[:k])
            tree.learn(node, reply[k], go_on_share * delete_weight)
            tree.learn(node, bundle.delete_id, (1 - go_on_share) * delete_weight)
        tree.learn(tree.context_node(len(prompt), reply[:end]), bundle.delete_id, delete_weight)
    return tree


@torch.no_grad()
def likeliest_wrong(bundle: ModelBundle, tasks: Sequence[TrainTask], per_question: int, batch: int = 16,
                    label: str = "likeliest mistakes") -> list[set[Reply]]:
    """For each task, the `per_question` likeliest wrong tokens over all the live states of the reference
    answer, each written out as a wrong reply going on with the rest of the reference: the mistakes the
    model is closest to making. (Taking a few over the whole answer, not a few at every state, keeps the
    wrong replies from outnumbering the right one, which would teach deleting right answers.)"""
    from tqdm.auto import tqdm

    model = bundle.model
    was_training = model.training
    model.eval()
    banned = set(bundle.end_ids) | {bundle.delete_id}
    out = []
    for start in tqdm(range(0, len(tasks), batch), desc=label, unit="batch", dynamic_ncols=True):
        chunk = tasks[start : start + batch]
        trees = [question_tree(bundle, task, (), 1.0, 0.0, 0) for task in chunk]
        inputs = collate(trees, bundle.reply_end)
        device = next(model.parameters()).device
        log_probs = model(input_ids=inputs["input_ids"].to(device), position_ids=inputs["position_ids"].to(device),
                          attention_mask=inputs["attention_mask"].to(device)).logits.float().log_softmax(-1).cpu()
        for row, (task, tree) in enumerate(zip(chunk, trees)):
            prompt_length = len(bundle.prompt_ids(task))
            answer = bundle.answer_ids(task, task.answers[0])
            candidates: list[tuple[float, Reply]] = []
            for k in range(len(answer) + 1):
                node = tree.context_node(prompt_length, answer[:k])
                ranked = log_probs[row, node].topk(per_question * 8)
                found = 0
                for log_prob, token in zip(ranked.values.tolist(), ranked.indices.tolist()):
                    reply = (*answer[:k], token)
                    if token in banned or alive(bundle, task, reply):
                        continue
                    candidates.append((log_prob, (*reply, *answer[k + 1 :])))
                    found += 1
                    if found == per_question:
                        break
            out.append({reply for _, reply in sorted(candidates, reverse=True)[:per_question]})
    model.train(was_training)
    return out
