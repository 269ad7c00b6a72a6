"""Benchmark: our engine against llama-cpp-python's own generation, and a delete against a decode step."""
import argparse
import os
import statistics
import time
from pathlib import Path

import llama_cpp

from backspace_cli import defaults
from backspace_cli.engine.engine import DeleteRules, Engine, LogitsWindow
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sampling import greedy, make_sampler

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
SMOLLM2 = Path.home() / ".cache/backspace/models/SmolLM2-135M-Instruct.Q4_1.gguf"
SAMPLERS = {
    "greedy": dict(temp=0.0),
    "default": dict(temp=defaults.TEMPERATURE, top_k=defaults.TOP_K, top_p=defaults.TOP_P, min_p=defaults.MIN_P),
}


def decode_rate(stamps: list[float]) -> float:
    """Tokens per second from the first token to the last: prompt processing is not included."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def ours(engine: Engine, prompt: list[int], tokens: int, sampler_settings: dict) -> float:
    settings = {"temp": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, **sampler_settings}
    sampler = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=1)
    engine.sequence.trim(0)
    stamps = [time.perf_counter() for _ in engine.generate(prompt, sampler=sampler, max_tokens=tokens,
                                                           rules=DeleteRules(token_id=None))]
    return decode_rate(stamps[:-1])


def theirs(llama: llama_cpp.Llama, tokens: int, sampler_settings: dict) -> float:
    settings = {"temperature": sampler_settings.get("temp", 0.0), "top_k": sampler_settings.get("top_k", 0),
                "top_p": sampler_settings.get("top_p", 1.0), "min_p": sampler_settings.get("min_p", 0.0)}
    llama.reset()
    stamps = [time.perf_counter() for _ in llama.create_completion(PROMPT, max_tokens=tokens, stream=True,
                                                                   seed=1, **settings)]
    return decode_rate(stamps)


def delete_cost(engine: Engine, prompt: list[int], steps: int) -> tuple[float, float]:
    """Median seconds of one decode step, and of one delete within the window (as the engine does it:
    llama_memory_seq_rm on the last slot, then the saved logits row restored)."""
    sequence, model = engine.sequence, engine.model
    window = LogitsWindow(defaults.REWIND_WINDOW, model.n_vocab)
    sequence.trim(0)
    logits = sequence.feed(prompt)
    decodes, deletes = [], []
    for step in range(steps):
        token = greedy(logits)
        start = time.perf_counter()
        window.save(step, sequence.feed([token]))
        decodes.append(time.perf_counter() - start)
        start = time.perf_counter()
        sequence.trim(len(sequence.tokens) - 1)
        logits = window.load(step)
        deletes.append(time.perf_counter() - start)
        sequence.feed([token])  # put it back, so the context keeps growing like a reply
    return statistics.median(decodes), statistics.median(deletes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("BACKSPACE_TEST_MODEL", SMOLLM2)))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    model = load_model(args.model, n_ctx=2048, n_threads=args.threads)
    engine = Engine(model)
    llama = llama_cpp.Llama(str(args.model), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                            verbose=False)
    prompt = model.tokenize(PROMPT, add_bos=True)
    print(f"model: {args.model.name}, {args.tokens} tokens, {args.threads} threads, median of {args.runs} runs\n")
    print("| sampler | backspace engine (t/s) | llama-cpp-python create_completion (t/s) | ratio |")
    print("|---|---|---|---|")
    for name, sampler_settings in SAMPLERS.items():
        ours(engine, prompt, 16, sampler_settings), theirs(llama, 16, sampler_settings)  # warm-up
        mine, reference = [], []
        for _ in range(args.runs):  # interleaved, so that a noisy moment hits both
            mine.append(ours(engine, prompt, args.tokens, sampler_settings))
            reference.append(theirs(llama, args.tokens, sampler_settings))
        a, b = statistics.median(mine), statistics.median(reference)
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    decode_s, delete_s = delete_cost(engine, prompt, steps=64)
    print("\n| operation | median time | share of a decode step |")
    print("|---|---|---|")
    print(f"| decode step | {decode_s * 1e3:.2f} ms | 100% |")
    print(f"| delete within the window | {delete_s * 1e6:.1f} µs | {delete_s / decode_s:.2%} |")


if __name__ == "__main__":
    main()
