"""The trainer's tasks: eval's task file, its scorings or a Python verifier, and a held-out split that never overlaps."""
import importlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backspace_convert.errors import UserError
from ..data.tasks import SCORINGS, score
from ..data.jsonl import bad_line, read_json_lines


@dataclass(frozen=True)
class TrainTask:
    messages: tuple[tuple[str, str], ...]  # (role, content): the conversation the reply answers
    answers: tuple[str, ...]  # right replies; a reply is alive while its text begins one of them

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @property
    def key(self) -> tuple:
        """What makes two tasks the same question, for the held-out check."""
        return self.messages


def read_train_tasks(lines: Iterable[str]) -> list[TrainTask]:
    """{"prompt": TEXT} or {"messages": [...]}, with "answer": TEXT or a list of right answers."""
    tasks = []
    for number, data in read_json_lines(lines):
        if not isinstance(data, dict):
            raise bad_line(number, 'expected {"prompt" or "messages", "answer"}')
        tasks.append(TrainTask(_messages(number, data), _answers(number, data)))
    if not tasks:
        raise UserError("the task file has no tasks")
    return tasks


def _messages(number: int, data: dict) -> tuple[tuple[str, str], ...]:
    if isinstance(data.get("prompt"), str):
        return (("user", data["prompt"]),)
    messages = data.get("messages")
    if (not isinstance(messages, list) or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                       for m in messages)):
        raise bad_line(number, 'expected "prompt": TEXT or "messages": [{"role": TEXT, "content": TEXT}, ...]')
    return tuple((m["role"], m["content"]) for m in messages)


def _answers(number: int, data: dict) -> tuple[str, ...]:
    answer = data.get("answer")
    answers = [answer] if isinstance(answer, (str, int, float)) and not isinstance(answer, bool) else answer
    if not isinstance(answers, list) or not answers or not all(isinstance(a, (str, int, float)) for a in answers):
        raise bad_line(number, 'expected "answer": TEXT or a list of right answers')
    return tuple(str(a).strip() for a in answers)


Scorer = Callable[[str, TrainTask], float]


def make_scorer(scoring: str) -> Scorer:
    """exact or contains (as eval scores), or module:function, called as function(reply, answers) -> score,
    for tasks with many right answers; a score is a number, 1.0 for a right reply."""
    if scoring in SCORINGS:
        return lambda reply, task: float(any(score(reply, answer, scoring) for answer in task.answers))
    module_name, _, function_name = scoring.partition(":")
    if not module_name or not function_name:
        raise UserError(f"unknown scoring {scoring!r}: use {', '.join(SCORINGS)} or MODULE:FUNCTION")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise UserError(f"the verifier {scoring} cannot be loaded: {error}") from None
    if not callable(function):
        raise UserError(f"the verifier {scoring} is not a function")

    def verified(reply: str, task: TrainTask) -> float:
        try:
            result = function(reply, list(task.answers))
            return float(result)
        except Exception as error:  # the user's code: any failure is theirs to see, in one line
            raise UserError(f"the verifier {scoring} failed on {task.messages[-1][1][:60]!r}: "
                            f"{type(error).__name__}: {error}") from None

    return verified


def split_held_out(tasks: list[TrainTask], held_out: list[TrainTask] | None, share: float,
                   seed: int) -> tuple[list[TrainTask], list[TrainTask], int]:
    """(training tasks, held-out tasks, training tasks dropped because a held-out task asks the same).
    Without a held-out file, a seeded share of the tasks is held out."""
    if held_out is None:
        order = list(range(len(tasks)))
        random.Random(seed).shuffle(order)
        count = max(1, round(len(tasks) * share)) if len(tasks) > 1 else 0
        held_out = [tasks[i] for i in sorted(order[:count])]
        tasks = [tasks[i] for i in sorted(order[count:])]
    asked = {task.key for task in held_out}
    kept = [task for task in tasks if task.key not in asked]
    if not kept:
        raise UserError("no training tasks are left once the held-out ones are set aside")
    return kept, held_out, len(tasks) - len(kept)
