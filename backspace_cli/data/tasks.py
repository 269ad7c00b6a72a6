"""eval's task file, a prompt and its answer per line, and how a reply is scored against the answer."""
from collections.abc import Iterable
from dataclasses import dataclass

from backspace_convert.errors import UserError
from .jsonl import bad_line, read_json_lines

SCORINGS = ("exact", "contains")


@dataclass(frozen=True)
class Task:
    prompt: str
    answer: str


def read_tasks(lines: Iterable[str]) -> list[Task]:
    tasks = []
    for number, data in read_json_lines(lines):
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str) or "answer" not in data:
            raise bad_line(number, 'expected {"prompt": TEXT, "answer": TEXT}')
        tasks.append(Task(data["prompt"], str(data["answer"])))
    if not tasks:
        raise UserError("the task file has no tasks")
    return tasks


def score(reply: str, answer: str, scoring: str) -> bool:
    reply, answer = reply.strip(), answer.strip()
    return reply == answer if scoring == "exact" else answer in reply
