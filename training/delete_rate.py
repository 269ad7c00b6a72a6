"""How often a delete model deletes on ordinary chat prompts, outside the task it was trained on, as JSON.

A delete model should delete where it has made a mistake, not become overly cautious: on these prompts a
good one rarely deletes. Each prompt is asked once, greedily, as a chat's first message; with --base the
model it was trained from answers the first few too, so that a reader can set the replies side by side.
"""
import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

from backspace_cli import api
from backspace_cli.data.reply_deletes import ReplyDeletes
from backspace_convert.atomic import never_an_input, output_stream
from backspace_convert.errors import UserError

PROMPTS = Path(__file__).with_name("ordinary-prompts.txt")
MAX_TOKENS = 64  # enough for a reply to start and show its habits
EXAMPLES = 5  # prompts whose replies the report shows


def ask(session, prompt: str) -> dict:
    """One greedy reply to `prompt`: its text and its deletes."""
    deletes = ReplyDeletes()
    for event in api.stream_generate(session, [{"role": "user", "content": prompt}]):
        deletes.add(event)
    return {"prompt": prompt, "text": event.text, "deletes": event.counts.deletes,
            "longest_delete_run": deletes.longest_run, "emptied": deletes.emptied}


def report(model: str, replies: list[dict], base: str | None, base_replies: list[str]) -> dict:
    n = len(replies)
    deleting = sum(reply["deletes"] > 0 for reply in replies)
    examples = [{"prompt": reply["prompt"], "reply": reply["text"]} for reply in replies[:EXAMPLES]]
    for example, base_reply in zip(examples, base_replies):
        example["base_reply"] = base_reply
    return {
        "model": model,
        "base": base,
        "prompts": n,
        "replies_with_delete": deleting,
        "share_with_delete": deleting / n,
        "deletes_per_reply": sum(reply["deletes"] for reply in replies) / n,
        "longest_delete_run": max(reply["longest_delete_run"] for reply in replies),
        "share_emptied": sum(reply["emptied"] for reply in replies) / n,
        "examples": examples,
        "replies": replies,
    }


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive count")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description="Measure a delete model's delete rate on ordinary chat prompts.")
    parser.add_argument("model", metavar="MODEL.gguf")
    parser.add_argument("--base", metavar="BASE.gguf", help="the model it was trained from, for the examples")
    parser.add_argument("-n", "--max-tokens", type=positive, default=MAX_TOKENS, help="tokens per reply")
    parser.add_argument("--limit", type=positive, help="only the first N prompts")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here instead of printing it")
    args = parser.parse_args()
    prompts = PROMPTS.read_text(encoding="utf-8").splitlines()[:args.limit]
    inputs = [Path(path) for path in (args.model, args.base) if path] + [PROMPTS]
    try:
        if args.out:
            never_an_input(Path(args.out), inputs)
        # Opened before the run, so that an output that cannot be written is refused before any reply.
        with output_stream(Path(args.out), force=True) if args.out else nullcontext(sys.stdout) as out:
            session = api.load(args.model, temp=0, max_tokens=args.max_tokens)
            replies = [ask(session, prompt) for prompt in prompts]
            base_replies = []
            if args.base:
                base = api.load(args.base, temp=0, max_tokens=args.max_tokens)
                base_replies = [ask(base, prompt)["text"] for prompt in prompts[:EXAMPLES]]
            out.write(json.dumps(report(args.model, replies, args.base, base_replies), indent=2) + "\n")
    except UserError as error:
        sys.exit(f"delete_rate.py: {error}")
    except KeyboardInterrupt:  # the output, if any, was never written
        sys.exit("delete_rate.py: interrupted")


if __name__ == "__main__":
    main()
