"""The built-in model's task (training/twosum.py) and its held-out tasks: one right answer each, never
a question seen in training, and the trainer's dead states are exactly the replies that cannot win."""
import json
import re
import sys
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parent.parent / "training"
sys.path.insert(0, str(TRAINING))

import twosum  # noqa: E402

EVAL_TASKS = TRAINING / "eval-tasks.jsonl"


def listed(prompt):
    """The list's numbers and the target, read back from the question's words."""
    *numbers, target = [int(n) for n in re.findall(r"\d+", prompt)]
    return numbers, target


def check(prompt, answer):
    numbers, target = listed(prompt)
    assert len(set(numbers)) == len(numbers) and len(numbers) in twosum.SIZES
    assert all(twosum.LOW <= n <= twosum.HIGH for n in numbers)
    a, b = (int(n) for n in answer.split("+"))
    assert [tuple(sorted(pair)) for pair in twosum.pairs_adding_to(numbers, target)] == [(a, b)]
    assert a + b == target and a < b  # the smaller first


def test_every_task_has_exactly_one_pair_and_its_answer_names_it_smaller_first():
    for evaluation in (False, True):
        for task in twosum.tasks(2000, seed=3, evaluation=evaluation):
            check(task["prompt"], task["response"])


def question_of(prompt):
    numbers, target = listed(prompt)
    return frozenset(numbers), target


def test_held_out_questions_are_never_trained_on():
    training = {question_of(t["prompt"]) for t in twosum.tasks(20000, 1, False)}
    held = {question_of(t["prompt"]) for t in twosum.tasks(2000, 2, True)}
    assert len(training) > 1000 and len(held) > 100 and not training & held
    assert all(twosum.held_out(sorted(numbers), target) for numbers, target in held)


def test_the_shipped_eval_tasks_are_held_out_and_right():
    tasks = [json.loads(line) for line in EVAL_TASKS.read_text().splitlines()]
    assert len({question_of(task["prompt"]) for task in tasks}) == len(tasks) >= 1000  # distinct questions
    for task in tasks:
        check(task["prompt"], task["answer"])
        assert twosum.held_out(*listed(task["prompt"]))


def test_a_reply_is_alive_only_while_its_tokens_begin_the_answer():
    alive = ([], ["17"], ["17", "+"], ["17", "+", "5"])
    assert all(twosum.alive(reply, "17+5") for reply in alive)
    dead = (["1"], ["1", "7"], ["5"], ["17", "-"], ["17", "+", "25"], ["17", "+", "5", " "])
    assert not any(twosum.alive(reply, "17+5") for reply in dead)


def test_every_number_of_a_task_is_one_token():
    import vocab

    for task in twosum.tasks(200, seed=5, evaluation=False):
        numbers, _ = listed(task["prompt"])
        assert all(str(n) in vocab.pieces(task["prompt"]) for n in numbers)
        assert vocab.pieces(task["response"]) == [task["response"].split("+")[0], "+", task["response"].split("+")[1]]


def test_the_same_seed_gives_the_same_tasks():
    assert twosum.tasks(50, 7, True) == twosum.tasks(50, 7, True)
    assert twosum.tasks(50, 7, True) != twosum.tasks(50, 8, True)


def test_every_packed_state_learns_the_answer_while_it_lives_and_to_back_out_once_it_is_dead():
    """Each token of a packed sample, read with its ancestors as the engine's context, learns the
    answer's next token while the reply so far can still become the answer. Once it cannot, it learns to
    delete; only a wrong first number also learns to go on to "+" and its complement, whose check is one
    look-up, and then a delete is its other target."""
    pytest.importorskip("torch")
    import train

    tasks = twosum.tasks(300, seed=4, evaluation=False)
    answers = {t["prompt"]: t["response"] for t in tasks}
    deletes = goes_on = 0
    for sample in train.supervised(tasks, seed=4, recipe=train.Recipe(), chat_share=0.05):
        ids, parents, targets, also = sample["input_ids"], sample["parents"], sample["targets"], sample["also"]
        for i, target in enumerate(targets):
            if target == train.IGNORE:
                assert also[i] == train.IGNORE
                continue
            context, node = [], i
            while node >= 0:
                context.append(ids[node])
                node = parents[node]
            context = context[::-1]
            start = len(context) - context[::-1].index(train.ASSISTANT)  # the reply's first token
            question = train.decode(context[: start - 2]).split("<|user|>")[-1]
            reply = [train.TEXTS[token] for token in context[start:]]
            if twosum.alive(reply, answers[question]):
                assert (train.encode(answers[question]) + [train.EOS])[len(reply)] == target
                assert also[i] == train.IGNORE
                continue
            *_, total = twosum.numbers(question)
            complement = str(int(total) - int(reply[0]))
            if reply in ([reply[0]], [reply[0], "+"]) and 1 <= int(complement) <= 29:
                goes_on += 1
                assert train.TEXTS[target] == ("+" if len(reply) == 1 else complement)
                assert also[i] == train.DELETE
            else:
                deletes += 1
                assert target == train.DELETE and also[i] == train.IGNORE
    assert deletes > 300 and goes_on > 300


def test_a_question_asked_in_a_chat_learns_only_its_own_reply():
    """Earlier exchanges are context: their replies learn nothing, so a question asked in a chat is worth
    one answer's training, as it is asked alone."""
    pytest.importorskip("torch")
    import train

    tasks = twosum.tasks(200, seed=9, evaluation=False)
    chats = 0
    for sample in train.supervised(tasks, seed=9, recipe=train.Recipe(), chat_share=1.0):
        ids, targets = sample["input_ids"], sample["targets"]
        last_turn = len(ids) - ids[::-1].index(train.ASSISTANT)  # the last reply's first token
        chats += ids.count(train.ASSISTANT) > 1
        assert all(target == train.IGNORE for target in targets[: last_turn - 1])
        assert targets[last_turn - 1] != train.IGNORE
    assert chats > 190  # all but the few whose drawn history was the question itself
