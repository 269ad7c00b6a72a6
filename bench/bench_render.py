"""Benchmark: generation speed with live rendering in a pseudo-terminal, against plain text to a pipe."""
import argparse
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from rich.console import Console

from backspace_cli import defaults
from backspace_cli.engine.engine import DeleteRules, Engine, consume
from backspace_cli.engine.model import load_model
from backspace_cli.render.renderers import LiveRenderer, PlainRenderer
from backspace_cli.engine.sampling import greedy, make_logit_bias

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import tiny_models  # noqa: E402  (the tests' own GGUF builder)
from real_model import smollm2  # noqa: E402



def drain(fd: int) -> None:
    """Read everything written to the other end, as a terminal or a consumer of a pipe would."""
    while os.read(fd, 65536):
        pass


def rate(engine: Engine, prompt: list[int], tokens: int, renderer, rules: DeleteRules) -> float:
    engine.sequence.trim(0)
    never_stop = make_logit_bias({engine.model.llama.token_eos(): -100.0})
    done = consume(engine.generate(prompt, sampler=greedy, logits_processors=[never_stop], max_tokens=tokens,
                                   rules=rules), renderer)
    return done.gen_tps


def measure(path: Path, tokens: int, runs: int) -> tuple[float, float]:
    model = load_model(path, n_ctx=1024, n_threads=2)
    engine = Engine(model)
    prompt = model.tokenize("the water is made of", add_bos=True)
    delete = model.find_token(tiny_models.DELETE)
    # Some deletes, so the renderer's erasing is part of what is measured.
    rules = DeleteRules(token_id=delete)
    terminal_master, terminal = os.openpty()
    pipe_reader, pipe = os.pipe()
    for fd in (terminal_master, pipe_reader):
        threading.Thread(target=drain, args=(fd,), daemon=True).start()
    with open(terminal, "w", closefd=False) as tty_file, open(pipe, "w", closefd=False) as pipe_file:
        console = Console(file=tty_file, force_terminal=True, width=100, height=30)
        live, plain = [], []
        for run in range(runs + 1):  # the first pair warms up
            with LiveRenderer(console, defaults.REWIND_WINDOW) as renderer:
                live.append(rate(engine, prompt, tokens, renderer, rules))
            plain.append(rate(engine, prompt, tokens, PlainRenderer(pipe_file, defaults.REWIND_WINDOW), rules))
    return statistics.median(live[1:]), statistics.median(plain[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        models = {
            "tiny llama (tests' fixture, the fastest)": tiny_models.build_llama(Path(scratch) / "tiny.gguf"),
            "SmolLM2-135M-Instruct Q4_1": smollm2(),
        }
        print(f"{args.tokens} tokens, greedy, 2 threads, median of {args.runs} interleaved runs\n")
        print("| model | live in a pty (t/s) | plain to a pipe (t/s) | live / plain |")
        print("|---|---|---|---|")
        for name, path in models.items():
            live, plain = measure(path, args.tokens, args.runs)
            print(f"| {name} | {live:.0f} | {plain:.0f} | {live / plain:.1%} |")


if __name__ == "__main__":
    main()
