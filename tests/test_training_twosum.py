"""The built-in model's task (training/twosum.py) and its held-out tasks: one right answer each, never
a question seen in training, and every number one token to the built-in model."""
import json
import re
import sys
from pathlib import Path

from backspace_cli.default_model import DEFAULT_MODEL
from backspace_cli.engine.model import load_model

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


def test_every_number_of_a_task_is_one_token_to_the_built_in_model():
    model = load_model(DEFAULT_MODEL, n_ctx=256, n_threads=2)

    def pieces(text):
        return [model.piece(token).decode("utf-8") for token in model.tokenize(text, add_bos=False)]

    for task in twosum.tasks(200, seed=5, evaluation=False):
        numbers, target = listed(task["prompt"])
        words = [piece.strip() for piece in pieces(task["prompt"])]
        assert all(str(n) in words for n in numbers + [target])
        a, b = task["response"].split("+")
        assert pieces(task["response"]) == [a, "+", b]


def test_the_same_seed_gives_the_same_tasks():
    assert twosum.tasks(50, 7, True) == twosum.tasks(50, 7, True)
    assert twosum.tasks(50, 7, True) != twosum.tasks(50, 8, True)


def test_a_share_of_questions_comes_after_earlier_exchanges_of_training_questions_answered_right():
    questions = twosum.tasks(2000, 4, False)
    asked = twosum.in_chats(questions, 0.5, seed=4)
    chats = [task for task in asked if "messages" in task]
    assert [task["response"] for task in asked] == [task["response"] for task in questions]
    assert 800 < len(chats) < 1200
    training = {question_of(t["prompt"]) for t in questions}
    for chat in chats:
        *history, last = chat["messages"]
        assert last["role"] == "user" and 2 <= len(history) <= 8
        for question, reply in zip(history[::2], history[1::2]):
            assert (question["role"], reply["role"]) == ("user", "assistant")
            assert question_of(question["content"]) in training
            check(question["content"], reply["content"])
