"""The real-model task (training/sorting.py): lists of distinct two-digit numbers, each answer the list
sorted, held-out lists never asked in training, and a verifier that reads the numbers, not the spacing."""
import json
import re
import subprocess
import sys
from pathlib import Path

TRAINING = Path(__file__).resolve().parent.parent / "training"
sys.path.insert(0, str(TRAINING))

import sorting  # noqa: E402


def numbers_of(prompt):
    return [int(n) for n in re.findall(r"\d+", prompt)]


def test_every_answer_is_its_lists_distinct_numbers_in_increasing_order():
    for evaluation in (False, True):
        for task in sorting.tasks(2000, seed=3, evaluation=evaluation):
            listed = numbers_of(task["prompt"])
            assert len(listed) in sorting.SIZES and len(set(listed)) == len(listed)
            assert all(sorting.LOW <= n <= sorting.HIGH for n in listed)
            assert task["answer"] == " ".join(map(str, sorted(listed)))


def test_no_held_out_list_is_ever_a_training_list_in_any_order():
    training = {frozenset(numbers_of(t["prompt"])) for t in sorting.tasks(20000, seed=1, evaluation=False)}
    held_out = [frozenset(numbers_of(t["prompt"])) for t in sorting.tasks(1000, seed=2, evaluation=True)]
    assert len(set(held_out)) == len(held_out)  # and no list is asked twice
    assert not training & set(held_out)


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others():
    assert sorting.tasks(50, seed=4, evaluation=False) == sorting.tasks(50, seed=4, evaluation=False)
    assert sorting.tasks(50, seed=4, evaluation=False) != sorting.tasks(50, seed=5, evaluation=False)


def test_the_verifier_takes_the_right_numbers_in_order_however_they_are_separated():
    assert sorting.verify("12 40 77", ["12 40 77"]) == 1.0
    assert sorting.verify("12, 40, 77", ["12 40 77"]) == 1.0
    assert sorting.verify(" 12 40 77.", ["12 40 77"]) == 1.0


def test_the_verifier_refuses_a_wrong_order_a_missing_or_an_extra_number():
    assert sorting.verify("12 77 40", ["12 40 77"]) == 0.0
    assert sorting.verify("12 40", ["12 40 77"]) == 0.0
    assert sorting.verify("12 40 77 77", ["12 40 77"]) == 0.0
    assert sorting.verify("1240 77", ["12 40 77"]) == 0.0


def test_the_script_writes_backspace_eval_tasks(tmp_path):
    out = subprocess.run([sys.executable, str(TRAINING / "sorting.py"), "5", "--eval", "--seed", "7"],
                         capture_output=True, text=True, check=True).stdout
    tasks = [json.loads(line) for line in out.splitlines()]
    assert tasks == sorting.tasks(5, seed=7, evaluation=True)
    assert all(set(task) == {"prompt", "answer"} for task in tasks)


def test_the_fair_baselines_recipe_is_the_delete_recipe_without_deletes():
    recipes = TRAINING / "smollm2"
    deletes = json.loads((recipes / "recipe-deletes.json").read_text())
    plain = json.loads((recipes / "recipe-plain.json").read_text())
    assert deletes.get("deletes", True) is True
    about_the_model = ("description", "examples")  # the delete model's words about itself
    assert plain == {**{k: v for k, v in deletes.items() if k not in about_the_model}, "deletes": False}
