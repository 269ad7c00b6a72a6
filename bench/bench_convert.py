"""Benchmark of `backspace convert` (not a test): time against cp, peak memory, and where the time goes.

    python bench/bench_convert.py [--smollm2 PATH] [--cache DIR] [--rounds N]

Builds, once, a synthetic GGUF of over 2 GB with a Llama-3-sized tokenizer (128,256 tokens and
280,147 merges, F16 token_embd and output of 128,256 x 4,096) in bench/ in backspace's cache folder, then, for
it and for SmolLM2-135M-Instruct, prints: the convert time next to `cp` of the same file, the peak RSS
of the converting process, and the split between parsing the metadata, planning (vocabulary and new
rows), writing the metadata, copying the tensors, checking the output and making it durable. Each
conversion runs in its own process, so that its peak RSS (VmHWM) is its own.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from backspace_convert.cache import cache_folder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from real_model import smollm2  # noqa: E402

N_VOCAB, N_MERGES, N_EMBD = 128_256, 280_147, 4096  # Llama 3's tokenizer and embedding width
SYNTHETIC = "synthetic-llama3-vocab-2.1GB.gguf"

# Peak RSS is VmHWM, which exec resets; ru_maxrss would inherit the benchmark process's own peak.
CONVERT = """
import json, resource, sys, time

def peak_kb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

from backspace_convert import ConvertSpec, convert_file
import backspace_convert.convert, gguf, numpy
baseline = peak_kb()
started = time.perf_counter()
result = convert_file(sys.argv[1], sys.argv[2], ConvertSpec(init=sys.argv[3]), force=True)
seconds = time.perf_counter() - started
peak = peak_kb()
print(json.dumps({"seconds": seconds, "peak_kb": peak, "baseline_kb": baseline, "timings": result.timings,
                  "summary": result.edit.summary}))
"""


def build_synthetic(path: Path) -> None:
    """A llama-architecture GGUF with Llama 3's vocabulary size and merges, written tensor by tensor."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = [f"tok{i}" if i % 7 else f"Ġword{i}" for i in range(N_VOCAB - 256)]
    tokens += [f"<|reserved_special_token_{i}|>" for i in range(256)]
    types = [gguf.TokenType.NORMAL] * (N_VOCAB - 256) + [gguf.TokenType.CONTROL] * 256
    merges = [f"m{i % 5000} g{i}" for i in range(N_MERGES)]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(N_VOCAB - 256)
    writer.add_eos_token_id(N_VOCAB - 255)
    writer.add_context_length(8192)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(1)
    writer.add_feed_forward_length(2 * N_EMBD)
    writer.add_head_count(32)
    writer.add_head_count_kv(8)
    writer.add_vocab_size(N_VOCAB)
    shapes = {
        "token_embd.weight": (N_VOCAB, N_EMBD),
        "output_norm.weight": (N_EMBD,),
        "output.weight": (N_VOCAB, N_EMBD),
        "blk.0.attn_norm.weight": (N_EMBD,),
        "blk.0.attn_q.weight": (N_EMBD, N_EMBD),
    }
    for name, shape in shapes.items():
        dtype = np.float16 if len(shape) == 2 else np.float32
        writer.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name, shape in shapes.items():
        if len(shape) == 1:
            writer.write_tensor_data(np.ones(shape, dtype=np.float32))
            continue
        # One random block of rows, repeated: enough for a copy benchmark, and quick to build.
        block = (rng.standard_normal((1024, shape[1]), dtype=np.float32) * 0.02).astype(np.float16)
        writer.write_tensor_data(np.resize(block, shape))
    writer.close()


def time_cp(source: Path, target: Path, durable: bool) -> float:
    """cp of the file; with `durable`, followed by an fsync of the copy, which convert's output gets."""
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    if durable:
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def measure(source: Path, work: Path, init: str) -> dict:
    output = work / f"{source.stem}.backspace.gguf"
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", CONVERT, str(source), str(output), init], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        sys.exit(f"convert failed: {run.stderr.strip()}")
    result = json.loads(run.stdout)
    result["process_seconds"] = wall
    output.unlink()
    return result


def quietly(measure_once):
    """Each run starts with no writeback pending from the one before: the disk's backlog is the
    largest source of noise here (bench/NOTES.md)."""
    os.sync()
    return measure_once()


def report(name: str, source: Path, work: Path, rounds: int) -> None:
    size = source.stat().st_size
    subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)  # all start from a warm cache
    runs = {"cp": [], "cp+fsync": [], "mean": [], "zero": []}
    for _ in range(rounds):  # interleaved, so that a drift in the machine touches every measure alike
        runs["cp"].append(quietly(lambda: time_cp(source, work / "cp-copy.gguf", durable=False)))
        runs["cp+fsync"].append(quietly(lambda: time_cp(source, work / "cp-copy.gguf", durable=True)))
        for init in ("mean", "zero"):
            runs[init].append(quietly(lambda: measure(source, work, init)))
    cp, durable_cp = statistics.median(runs["cp"]), statistics.median(runs["cp+fsync"])
    print(f"\n{name}: {source.name}, {size / 1e9:.2f} GB; medians of {rounds} interleaved rounds")
    print(f"  cp                                 {cp:6.2f} s")
    print(f"  cp, then fsync of the copy         {durable_cp:6.2f} s")
    for init in ("mean", "zero"):
        median = statistics.median(run["seconds"] for run in runs[init])
        result = min(runs[init], key=lambda run: abs(run["seconds"] - median))  # the run at the median
        t, seconds = result["timings"], result["seconds"]
        print(f"  convert (append, --init {init:4})     {seconds:6.2f} s  = {seconds / cp:.1f} x cp,"
              f" {seconds / durable_cp:.1f} x cp+fsync   (process with imports: {result['process_seconds']:.2f} s)")
        print(f"    peak RSS {result['peak_kb'] / 1024:.0f} MB (after imports: {result['baseline_kb'] / 1024:.0f} MB)")
        print(f"    parse metadata {t['parse']:.2f} s | plan (vocabulary, new rows) {t['plan']:.2f} s"
              f" | write metadata {t['write_metadata']:.2f} s | copy tensors {t['copy_tensors']:.2f} s"
              f" | check output {t['verify']:.2f} s | close, fsync and rename {t['close'] + t['sync']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", type=Path, default=smollm2())
    parser.add_argument("--cache", type=Path, default=cache_folder() / "bench")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    synthetic = args.cache / SYNTHETIC
    if not synthetic.exists():
        print(f"building {synthetic} (once)...", flush=True)
        partial = synthetic.with_suffix(".partial")
        build_synthetic(partial)
        partial.rename(synthetic)
    work = args.cache / "work"
    work.mkdir(exist_ok=True)
    free = shutil.disk_usage(work).free
    if free < 3 * synthetic.stat().st_size:
        sys.exit(f"need {3 * synthetic.stat().st_size / 1e9:.1f} GB free in {work}, have {free / 1e9:.1f} GB")
    report("synthetic Llama-3-vocabulary model", synthetic, work, args.rounds)
    if args.smollm2.is_file():
        report("SmolLM2-135M-Instruct", args.smollm2, work, args.rounds)
    else:
        print(f"\nSmolLM2 not found at {args.smollm2}: run `make models`")


if __name__ == "__main__":
    main()
