"""The real-model task: sort a short list of two-digit numbers, asked in plain words.

Choosing the next number means finding the smallest one not yet written; a wrong choice shows a few
tokens on, when the number after it is smaller. So a model that writes a number too early can see it
once it has written the next, delete back to it, and try its next candidate.
"""
import argparse
import json
import random
import re
import sys
import zlib

LOW, HIGH = 10, 99  # two digits each, so every number is written the same way
SIZES = (5, 6, 7)  # numbers in a list
QUESTIONS = (
    "Sort these numbers from smallest to largest: {numbers}",
    "Sort from smallest to largest: {numbers}",
    "Put these numbers in increasing order: {numbers}",
    "Write {numbers} in ascending order.",
    "Order from lowest to highest: {numbers}",
    "sort {numbers}",
)
SEPARATORS = (" ", ", ")


def held_out(numbers: list[int]) -> bool:
    """One list in ten (its numbers in any order) is never trained on."""
    return zlib.crc32(",".join(map(str, sorted(numbers))).encode()) % 10 == 0


def answer(numbers: list[int]) -> str:
    return " ".join(map(str, sorted(numbers)))


def verify(reply: str, answers: list[str]) -> float:
    """1.0 when the reply lists the numbers of an answer in its order, whatever separates them."""
    written = re.findall(r"\d+", reply)
    return float(any(written == re.findall(r"\d+", right) for right in answers))


def tasks(count: int, seed: int, evaluation: bool) -> list[dict]:
    """`count` questions from the training or the held-out ones, no list asked twice, as {"prompt", "answer"}."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < count:
        numbers = rng.sample(range(LOW, HIGH + 1), rng.choice(SIZES))
        key = frozenset(numbers)
        if held_out(numbers) != evaluation or key in seen:
            continue
        seen.add(key)
        listed = rng.choice(SEPARATORS).join(map(str, numbers))
        out.append({"prompt": rng.choice(QUESTIONS).format(numbers=listed), "answer": answer(numbers)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Write sorting tasks as JSONL.")
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true", help="held-out lists, as backspace eval tasks")
    args = parser.parse_args()
    for task in tasks(args.count, args.seed, args.eval):
        print(json.dumps(task))


if __name__ == "__main__":
    main()
