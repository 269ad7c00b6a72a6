"""The built-in model's task: adding two whole numbers of one to three digits, asked in plain words."""
import argparse
import json
import random
import sys
import zlib

MAX_DIGITS = 3
# Phrasings of the question; the model only ever answers with the sum.
QUESTIONS = (
    "What is {a}+{b}?",
    "What is {a} + {b}?",
    "what is {a} plus {b}?",
    "What's {a} plus {b}?",
    "{a}+{b}",
    "{a} + {b}",
    "{a}+{b}=",
    "{a} + {b} =",
    "Add {a} and {b}.",
    "add {a} and {b}",
    "Compute {a}+{b}.",
    "How much is {a} plus {b}?",
    "Sum of {a} and {b}?",
)


def held_out(a: int, b: int) -> bool:
    """One ordered pair in ten is never trained on."""
    return zlib.crc32(f"{a},{b}".encode()) % 10 == 0


def unseen(a: int, b: int) -> bool:
    """Evaluation pairs: held out in both orders, so that not even b+a was trained on."""
    return held_out(a, b) and held_out(b, a)


def number(rng: random.Random) -> int:
    digits = rng.randint(1, MAX_DIGITS)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def tasks(count: int, seed: int, evaluation: bool) -> list[dict]:
    """`count` questions from the training or the held-out pairs, as {"prompt", "response"}."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        a, b = number(rng), number(rng)
        if not (unseen(a, b) if evaluation else not held_out(a, b)):
            continue
        question = rng.choice(QUESTIONS).format(a=a, b=b)
        out.append({"prompt": question, "response": str(a + b)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", action="store_true", help="held-out pairs, as backspace eval tasks")
    args = parser.parse_args()
    for task in tasks(args.count, args.seed, args.eval):
        if args.eval:
            task = {"prompt": task["prompt"], "answer": task["response"]}
        print(json.dumps(task), file=sys.stdout)


if __name__ == "__main__":
    main()
