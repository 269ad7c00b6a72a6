"""The built-in model's task: which two numbers of a short list add up to a target, asked in plain words.

Choosing the first number means checking every candidate's complement; checking a written one is one
subtraction and one look-up. So a model that writes a wrong first number can tell soon after, delete it,
and try its next candidate: greedy decoding with deletes is a search that the model steers.
"""
import argparse
import json
import random
import sys
import zlib

LOW, HIGH = 1, 15  # one token each for the built-in model: checking a written number needs no look-ahead
SIZES = (5, 6, 7)  # numbers in a list
# Phrasings of the question; the target always comes after the list, so that reading the list cannot
# already work out the answer. The model only ever answers "a+b", the smaller number first: so checking
# a written pair needs no look-up of where its numbers stand in the list.
QUESTIONS = (
    "Which two of {numbers} add up to {target}?",
    "Which two of {numbers} sum to {target}?",
    "which two of {numbers} add up to {target}?",
    "Which two numbers of {numbers} add up to {target}?",
    "Pick two of {numbers} that add up to {target}.",
    "Find two of {numbers} that sum to {target}.",
    "{numbers}: which two add up to {target}?",
    "Two of {numbers} add up to {target}. Which?",
)
SEPARATORS = (" ", ", ")


def held_out(numbers: list[int], target: int) -> bool:
    """One question in ten (the list's numbers in any order, and the target) is never trained on."""
    return zlib.crc32(f"{sorted(numbers)},{target}".encode()) % 10 == 0


def pairs_adding_to(numbers: list[int], target: int) -> list[tuple[int, int]]:
    return [(a, b) for i, a in enumerate(numbers) for b in numbers[i + 1 :] if a + b == target]


def make_list(rng: random.Random, evaluation: bool, size: int) -> tuple[list[int], int]:
    """A list of `size` distinct numbers in which exactly one pair adds up to the target, and the target."""
    while True:
        a, b = rng.sample(range(LOW, HIGH + 1), 2)
        target = a + b
        numbers = [a, b]
        while len(numbers) < size:
            allowed = [x for x in range(LOW, HIGH + 1) if x not in numbers and target - x not in numbers]
            if not allowed:
                break
            numbers.append(rng.choice(allowed))
        if len(numbers) == size and held_out(numbers, target) == evaluation:
            rng.shuffle(numbers)
            return numbers, target


def answer(numbers: list[int], target: int) -> str:
    (a, b), = pairs_adding_to(numbers, target)
    return f"{min(a, b)}+{max(a, b)}"


def question(rng: random.Random, numbers: list[int], target: int) -> str:
    listed = rng.choice(SEPARATORS).join(str(x) for x in numbers)
    return rng.choice(QUESTIONS).format(numbers=listed, target=target)


def tasks(count: int, seed: int, evaluation: bool, sizes: tuple[int, ...] | None = None) -> list[dict]:
    """`count` questions from the training or the held-out ones, as {"prompt", "response"}."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        numbers, target = make_list(rng, evaluation, rng.choice(sizes or SIZES))
        out.append({"prompt": question(rng, numbers, target), "response": answer(numbers, target)})
    return out


def distinct_tasks(count: int, seed: int, evaluation: bool) -> list[dict]:
    """`count` tasks, no two of them the same question (the same numbers and target) in other words."""
    out, seen = [], set()
    for task in tasks(count * 50, seed, evaluation):
        *listed, target = numbers(task["prompt"])
        key = (frozenset(listed), target)
        if key not in seen:
            seen.add(key)
            out.append(task)
        if len(out) == count:
            return out
    raise ValueError(f"fewer than {count} distinct questions")


def in_chats(questions: list[dict], share: float, seed: int) -> list[dict]:
    """The questions, a `share` of them asked after 1 to 4 earlier exchanges of other questions answered
    right, as {"messages", "response"}: a chat's history, which a model asked one question at a time
    never sees."""
    rng = random.Random(seed)
    out = []
    for task in questions:
        if rng.random() >= share:
            out.append(task)
            continue
        messages = []
        for earlier in rng.sample(questions, rng.randint(1, 4)):
            messages += [{"role": "user", "content": earlier["prompt"]},
                         {"role": "assistant", "content": earlier["response"]}]
        out.append({"messages": [*messages, {"role": "user", "content": task["prompt"]}],
                    "response": task["response"]})
    return out


def numbers(prompt: str) -> list[str]:
    """The numbers of a question, as written, the target last."""
    return "".join(c if c.isdigit() else " " for c in prompt).split()


def main() -> None:
    parser = argparse.ArgumentParser(description="Write two-sum tasks as JSONL.")
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true", help="held-out questions, as backspace eval tasks")
    parser.add_argument("--chats", type=float, default=0.0, metavar="SHARE",
                        help="this share of the questions asked after earlier exchanges")
    args = parser.parse_args()
    questions = (distinct_tasks if args.eval else tasks)(args.count, args.seed, args.eval)
    for task in in_chats(questions, args.chats, args.seed):
        asked = {"prompt": task["prompt"]} if "prompt" in task else {"messages": task["messages"]}
        print(json.dumps({**asked, "answer": task["response"]}), file=sys.stdout)


if __name__ == "__main__":
    main()
