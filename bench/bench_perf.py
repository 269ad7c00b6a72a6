"""`make bench`: our engine against native llama.cpp (llama-bench) and llama-cpp-python, in one run.

Writes a markdown report to stdout and to bench/results.md. Ratios are what the targets are about:
every figure in one table comes from the same run, on the same prompts.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp

from backspace_cli import defaults
from backspace_cli.engine import DeleteRules, Engine, LogitsWindow
from backspace_cli.model import load_model
from backspace_cli.sampling import make_logit_bias, make_logits_processors, make_sampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import build_wide_vocab_llama  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backspace"
PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
THREADS = 2
# llama-bench repeats each test and reports the mean: pp512 on the 262k model takes only ~22 ms.
NATIVE_REPETITIONS = 3
SAMPLERS = {"greedy": dict(temp=0.0, top_k=0, top_p=1.0, min_p=0.0),
            "default": dict(temp=defaults.TEMPERATURE, top_k=defaults.TOP_K, top_p=defaults.TOP_P,
                            min_p=defaults.MIN_P)}


def median_of(runs: int, measure) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(runs))


def decode_rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def native(binary: str, model: Path, tokens: int) -> dict:
    """One llama-bench run (after its own warm-up) of tg and pp512, each the mean of its repetitions,
    and the build it reports."""
    out = subprocess.run([binary, "-m", str(model), "-t", str(THREADS), "-p", "512", "-n", str(tokens),
                          "-r", str(NATIVE_REPETITIONS), "-o", "json"], capture_output=True, text=True, check=True).stdout
    results = json.loads(out)
    tg = next(r for r in results if r["n_gen"] > 0)
    pp = next(r for r in results if r["n_prompt"] > 0)
    return {"tg": tg["avg_ts"], "pp512": pp["avg_ts"], "build": f'{tg["build_number"]} ({tg["build_commit"]})'}


def interleaved(runs: int, measures: dict) -> dict:
    """Each measure once per round, round after round, after one warm-up round: a slow spell of the
    machine (this one is a shared VM) then hits every measure of that round alike. The order rotates
    from round to round, so that no measure always follows the same one (llama-bench, say)."""
    for measure in measures.values():
        measure()
    names = list(measures)
    rounds = []
    for round_number in range(runs):
        shift = round_number % len(names)
        rounds.append({name: measures[name]() for name in names[shift:] + names[:shift]})
    return {name: [round_[name] for round_ in rounds] for name in names}


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median over rounds of each round's own ratio."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


class Bench:
    def __init__(self, path: Path, tokens: int, runs: int) -> None:
        self.path, self.tokens, self.runs = path, tokens, runs
        rss_before = resident_bytes()
        self.model = load_model(path, n_ctx=2048, n_threads=THREADS)
        self.model_rss = resident_bytes() - rss_before
        self.engine = Engine(self.model)
        self.prompt = self.model.tokenize(PROMPT, add_bos=True)
        self.never_stop = make_logit_bias({self.model.llama.token_eos(): -100.0})
        self.delete_token = self.model.find_token("<|delete|>") or self.model.find_token(" zebra")

    def ours(self, settings: dict, rules=DeleteRules(token_id=None), processors=()) -> float:
        sampler = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=1)
        self.engine.sequence.trim(0)
        stamps = [time.perf_counter() for _ in self.engine.generate(
            self.prompt, sampler=sampler, max_tokens=self.tokens, rules=rules,
            logits_processors=[self.never_stop, *processors])]
        return decode_rate(stamps[:-1])

    def armed(self, settings: dict) -> float:
        """With deletes possible, so that every step saves its logits into the rewind window, but a
        bias keeps the delete token from being drawn: the cost of being able to delete."""
        return self.ours(settings, rules=DeleteRules(token_id=self.delete_token),
                         processors=[make_logit_bias({self.delete_token: -100.0})])

    def bare(self) -> float:
        """The floor for any Python loop over these libraries: llama_decode on one token at a time
        through ctypes and a pointer to its logits, nothing else (no sampling, no bookkeeping)."""
        ctx = self.model.ctx
        self.engine.sequence.trim(0)  # an empty cache, as the engine's mirror of it says
        token = (llama_cpp.llama_token * 1)(self.prompt[0])
        stamps = []
        for _ in range(self.tokens):
            llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(token, 1))
            llama_cpp.llama_get_logits_ith(ctx, -1)
            stamps.append(time.perf_counter())
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)  # empty again, behind the mirror's back
        return decode_rate(stamps)

    def theirs(self, llama: llama_cpp.Llama, settings: dict) -> float:
        llama.reset()
        stamps = [time.perf_counter() for _ in llama.create_completion(
            PROMPT, max_tokens=self.tokens, stream=True, seed=1, temperature=settings["temp"],
            top_k=settings["top_k"], top_p=settings["top_p"], min_p=settings["min_p"],
            logit_bias={self.model.llama.token_eos(): -100.0})]
        return decode_rate(stamps)

    def cli_plain(self) -> float:
        """Through `backspace complete --format plain`: the extra time of N tokens over 1, run back to
        back, so that starting Python, loading the model and the prompt cancel out."""
        def wall(tokens: int) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "backspace_cli", "complete", "-m", str(self.path), "--format",
                            "plain", "--temp", "0", "-n", str(tokens), "-t", str(THREADS), "--logit-bias",
                            f"{self.model.llama.token_eos()}=-100", PROMPT], check=True, capture_output=True)
            return time.perf_counter() - start
        return (self.tokens - 1) / (wall(self.tokens) - wall(1))

    def prefill(self) -> float:
        """512 prompt tokens, the median of 3 after one unmeasured pass, as llama-bench warms up: the
        first 512-token batch after single-token decodes rebuilds llama.cpp's graph, and on the 262k
        model the whole pass takes only ~25 ms."""
        prompt = (self.prompt * 64)[:512]

        def once() -> float:
            self.engine.sequence.trim(0)
            start = time.perf_counter()
            self.engine.sequence.feed(prompt)
            return len(prompt) / (time.perf_counter() - start)

        return median_of(3, once)

    def step_costs(self) -> dict:
        """Median seconds of a decode step; of saving its logits into the rewind window; of sampling
        (the default sampler and processors); and of a delete within the window (llama_memory_seq_rm,
        then the saved logits restored)."""
        sequence, n_vocab = self.engine.sequence, self.model.n_vocab
        window = LogitsWindow(defaults.REWIND_WINDOW, n_vocab)
        settings = SAMPLERS["default"]
        sampler = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=1)
        processors = make_logits_processors(defaults.REPEAT_PENALTY, defaults.REPEAT_LAST_N, {})
        sequence.trim(0)
        logits = sequence.feed(self.prompt)
        costs = {"decode": [], "save": [], "sample": [], "delete": []}
        for step in range(64):
            start = time.perf_counter()
            window.save(step, logits)
            saved = time.perf_counter()
            for process in processors:
                logits = process(sequence.tokens, logits)
            token = sampler(logits)
            sampled = time.perf_counter()
            logits = sequence.feed([token])
            decoded = time.perf_counter()
            sequence.trim(len(sequence.tokens) - 1)
            window.load(step)
            deleted = time.perf_counter()
            logits = sequence.feed([token])
            for name, seconds in (("save", saved - start), ("sample", sampled - saved), ("decode", decoded - sampled),
                                  ("delete", deleted - decoded)):
                costs[name].append(seconds)
        return {name: statistics.median(values) for name, values in costs.items()}

    def with_deletes(self, target: float = 0.10) -> tuple[float, float, float]:
        """Effective tokens per second when a bias on the delete token makes about 10% of steps
        deletes: (the bias, the share of steps that were deletes, final tokens per second)."""
        delete_token = self.delete_token
        rules = DeleteRules(token_id=delete_token, max_deletes=10_000)
        settings = SAMPLERS["default"]

        def run(bias: float) -> tuple[float, float]:
            sampler = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=1)
            self.engine.sequence.trim(0)
            start = time.perf_counter()
            events = list(self.engine.generate(self.prompt, sampler=sampler, max_tokens=self.tokens, rules=rules,
                                               logits_processors=[self.never_stop, make_logit_bias({delete_token: bias})]))
            elapsed = time.perf_counter() - events[-1].timings.prompt_s - start
            counts = events[-1].counts
            return counts.deletes / (counts.deletes + counts.generated), counts.tokens / elapsed

        low, high = -10.0, 30.0  # bisect the bias to the target share of deletes
        for _ in range(7):
            middle = (low + high) / 2
            share, _ = run(middle)
            low, high = (middle, high) if share < target else (low, middle)
        bias = (low + high) / 2
        shares, rates = zip(*(run(bias) for _ in range(self.runs)))
        return bias, statistics.median(shares), statistics.median(rates)

    def window_bytes(self) -> int:
        return (defaults.REWIND_WINDOW + 1) * self.model.n_vocab * 4 + self.model.n_vocab * 4


def help_seconds(runs: int) -> float:
    def once() -> float:
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("backspace")), "--help"], check=True, capture_output=True)
        return time.perf_counter() - start
    return median_of(runs, once)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def report(args) -> str:
    llama_bench = subprocess.run(["bash", str(HERE / "build_llama_bench.sh")], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHON": sys.executable}).stdout.strip()
    wide = build_wide_vocab_llama(CACHE / "bench" / "wide-vocab-262k.gguf")
    models = {"SmolLM2-135M-Instruct Q4_1 (49,152 tokens)": args.smollm2,
              "synthetic llama, 262,144-token vocabulary": wide}
    lines = []
    out = lines.append
    out("# backspace benchmark results\n")
    out(f"- machine: {cpu_name()}, {os.cpu_count()} cores, {THREADS} threads used")
    benches, rounds, build = {}, {}, ""
    for name, path in models.items():
        bench = benches[name] = Bench(path, args.tokens, args.runs)
        llama = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS, verbose=False,
                                flash_attn=defaults.FLASH_ATTENTION)
        natives = []

        def native_tg(path=path) -> float:
            natives.append(native(llama_bench, path, args.tokens))
            return natives[-1]["tg"]

        measures = {"native": native_tg, "prefill": bench.prefill, "bare": bench.bare, "cli": bench.cli_plain}
        for sampler_name, settings in SAMPLERS.items():
            measures[f"ours {sampler_name}"] = lambda settings=settings: bench.ours(settings)
            measures[f"theirs {sampler_name}"] = lambda settings=settings, llama=llama: bench.theirs(llama, settings)
        measures["ours armed"] = lambda: bench.armed(SAMPLERS["default"])
        rounds[name] = interleaved(args.runs, measures)
        rounds[name]["native pp512"] = [run["pp512"] for run in natives[-args.runs:]]  # from each round's tg run
        build = natives[-1]["build"]
        del llama
    out(f"- llama-cpp-python {llama_cpp.__version__}; llama.cpp build {build} (llama-bench built from"
        " the same vendored source)")
    out(f"- {args.tokens} generated tokens; one warm-up round, then {args.runs} rounds that each run every"
        " measure once, in an order that rotates from round to round; medians over the rounds, and each"
        f" ratio is the median of the rounds' own ratios; in each round llama-bench reports the mean of"
        f" {NATIVE_REPETITIONS} repetitions\n")
    out("| model | sampler | native tg (t/s) | ours, API (t/s) | ours / native | create_completion (t/s) |"
        " ours / create_completion | bare ctypes loop (t/s) | ours / bare |")
    out("|---|---|---|---|---|---|---|---|---|")
    # (label, our measure, create_completion's measure with the same sampler)
    decode_rows = [(sampler_name, f"ours {sampler_name}", f"theirs {sampler_name}") for sampler_name in SAMPLERS]
    decode_rows.append(("default, deletes armed", "ours armed", "theirs default"))
    for name, measured in rounds.items():
        tg, bare = measured["native"], measured["bare"]
        for label, ours_name, theirs_name in decode_rows:
            ours, theirs = measured[ours_name], measured[theirs_name]
            out(f"| {name} | {label} | {statistics.median(tg):.1f} | {statistics.median(ours):.1f} |"
                f" {median_ratio(ours, tg):.2f} | {statistics.median(theirs):.1f} | {median_ratio(ours, theirs):.2f} |"
                f" {statistics.median(bare):.1f} | {median_ratio(ours, bare):.2f} |")
    out("\n| model | `backspace complete --format plain`, greedy (t/s) | ours / native tg |")
    out("|---|---|---|")
    for name, measured in rounds.items():
        out(f"| {name} | {statistics.median(measured['cli']):.1f} | {median_ratio(measured['cli'], measured['native']):.2f} |")
    out("\n| model | our prefill, 512 tokens (t/s) | native pp512 (t/s) | ours / native |")
    out("|---|---|---|---|")
    for name, measured in rounds.items():
        ours, theirs = measured["prefill"], measured["native pp512"]
        out(f"| {name} | {statistics.median(ours):.1f} | {statistics.median(theirs):.1f} |"
            f" {median_ratio(ours, theirs):.2f} |")
    out("\n| model | decode step | sampling (default sampler) | share | saving the logits for rewind | share |"
        " one delete in the window | share |")
    out("|---|---|---|---|---|---|---|---|")
    for name, bench in benches.items():
        cost = bench.step_costs()
        out(f"| {name} | {cost['decode'] * 1e3:.2f} ms |"
            + "".join(f" {cost[part] * 1e6:.0f} µs | {cost[part] / cost['decode']:.1%} |"
                      for part in ("sample", "save", "delete")))
    out("\n| model | delete-token bias | share of steps that were deletes | effective t/s (final tokens) |")
    out("|---|---|---|---|")
    for name, bench in benches.items():
        bias, share, rate = bench.with_deletes()
        out(f"| {name} | {bias:+.2f} | {share:.1%} | {rate:.1f} |")
    out("\n| model | the rewind window's saved logits | model resident memory |")
    out("|---|---|---|")
    for name, bench in benches.items():
        out(f"| {name} | {bench.window_bytes() / 2**20:.1f} MiB | {bench.model_rss / 2**20:.0f} MiB |")
    out(f"\n`backspace --help`: {help_seconds(args.runs):.3f} s (median)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smollm2", type=Path, default=Path(os.environ.get(
        "BACKSPACE_TEST_MODEL", CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    text = report(args)
    print(text)
    (HERE / "results.md").write_text(text)


if __name__ == "__main__":
    main()
