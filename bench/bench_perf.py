"""`make bench`: our engine against native llama.cpp (llama-bench) and llama-cpp-python, in one run.

Writes a markdown report to stdout and to bench/results.md. Ratios are what the targets are about:
every figure in one table comes from the same run, on the same prompts.
"""
import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from backspace_cli import defaults
from backspace_convert.cache import cache_folder
from backspace_cli.engine.engine import DeleteRules, Engine, LogitsWindow
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sampling import make_logit_bias, make_logits_processors, make_sampler
from backspace_cli.engine.sequence import CacheSequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import build_wide_vocab_llama  # noqa: E402
import tiny_models  # noqa: E402
from real_model import smollm2  # noqa: E402

HERE = Path(__file__).resolve().parent
LLAMA_TOOL = HERE.parent / "scripts" / "build_llama_tool.sh"  # builds llama.cpp's programs, cached
CACHE = cache_folder()
PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
THREADS = 2
# A prefill measure, ours or llama-bench's pp512, is the mean of enough 512-token passes to last about
# this long, and of 3 at least: on a small model one pass is too short to time alone.
PREFILL_SECONDS = 1.0
PREFILL_TOKENS = 512
SAMPLERS = {"greedy": dict(temp=0.0, top_k=0, top_p=1.0, min_p=0.0),
            "default": dict(temp=defaults.TEMPERATURE, top_k=defaults.TOP_K, top_p=defaults.TOP_P,
                            min_p=defaults.MIN_P)}


def median_of(runs: int, measure) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(runs))


def decode_rate(stamps: list[float]) -> float:
    """Tokens per second from the first token to the last: prompt processing is not included."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def llama_bench(binary: str, model: Path, *arguments: str) -> dict:
    """One llama-bench test (after its own warm-up): its mean rate, and the build it reports."""
    out = subprocess.run([binary, "-m", str(model), "-t", str(THREADS), *arguments, "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    (result,) = json.loads(out)
    return {"rate": result["avg_ts"], "build": f'{result["build_number"]} ({result["build_commit"]})'}


@dataclass
class Bracketed:
    """Measures taken between runs of a reference, and each one's speed relative to its two neighbours.

    This VM's speed shifts in steps from one stretch of seconds to the next (bench/NOTES.md), so a
    measure is only compared with what ran right before and after it. A ratio between two measures is
    the ratio of their relative speeds.
    """

    references: list[float]
    values: dict[str, list[float]]
    relatives: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def against_reference(self, name: str) -> float:
        return statistics.median(self.relatives[name])

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median over rounds of each round's own ratio."""
        return statistics.median(n / d for n, d in zip(self.relatives[numerator], self.relatives[denominator]))


def bracketed(runs: int, reference, measures: dict) -> Bracketed:
    """After one warm-up round, `runs` rounds in which every measure runs once, each followed by the
    reference (which also runs first of all); the order rotates from round to round, so that no
    measure always follows the same one."""
    reference()
    for measure in measures.values():
        measure()
    names = list(measures)
    references = [reference()]
    values = {name: [] for name in names}
    relatives = {name: [] for name in names}
    for round_number in range(runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            value = measures[name]()
            references.append(reference())
            values[name].append(value)
            relatives[name].append(value / statistics.mean(references[-2:]))
    return Bracketed(references, values, relatives)


def step_costs(model, sequence, prompt: list[int]) -> dict:
    """Median seconds of a decode step; of saving its logits into the rewind window; of sampling
    (the default sampler and processors); and of a delete within the window (llama_memory_seq_rm,
    then the saved logits restored)."""
    window = LogitsWindow(defaults.REWIND_WINDOW, model.n_vocab)
    settings = SAMPLERS["default"]
    sampler = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=1)
    processors = make_logits_processors(defaults.REPEAT_PENALTY, defaults.REPEAT_LAST_N, {})
    sequence.trim(0)
    logits = sequence.feed(prompt)
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
        sequence.resync()  # the cut of the cache, which the next decode would make
        window.load(step)
        deleted = time.perf_counter()
        logits = sequence.feed([token])
        for name, seconds in (("save", saved - start), ("sample", sampled - saved), ("decode", decoded - sampled),
                              ("delete", deleted - decoded)):
            costs[name].append(seconds)
    return {name: statistics.median(values) for name, values in costs.items()}


class Bench:
    def __init__(self, path: Path, tokens: int, runs: int, llama_bench_binary: str) -> None:
        self.path, self.tokens, self.runs = path, tokens, runs
        self.llama_bench_binary = llama_bench_binary
        self.build = ""  # llama.cpp's build, as llama-bench reports it
        rss_before = resident_bytes()
        self.model = load_model(path, n_ctx=2048, n_threads=THREADS)
        self.model_rss = resident_bytes() - rss_before
        self.engine = Engine(self.model)
        self.prompt = self.model.tokenize(PROMPT, add_bos=True)
        self.never_stop = make_logit_bias({self.model.llama.token_eos(): -100.0})
        self.delete_token = self.model.find_token("<|delete|>") or self.model.find_token(" zebra")
        self.prefill_prompt = (self.prompt * PREFILL_TOKENS)[:PREFILL_TOKENS]
        self._prefill_once()  # the first pass builds llama.cpp's graph for a full batch
        self.prefill_repetitions = max(3, math.ceil(PREFILL_SECONDS * self._prefill_once() / PREFILL_TOKENS))

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

    def native_tg(self) -> float:
        """llama-bench's tg after as many tokens as our prompt has, so that it decodes at the same
        positions as we do: decoding after a prompt is slower than from an empty cache."""
        return self._native("-p", "0", "-n", str(self.tokens), "-d", str(len(self.prompt)), "-r", "1")

    def native_pp512(self) -> float:
        return self._native("-p", str(PREFILL_TOKENS), "-n", "0", "-r", str(self.prefill_repetitions))

    def _native(self, *arguments: str) -> float:
        result = llama_bench(self.llama_bench_binary, self.path, *arguments)
        self.build = result["build"]
        return result["rate"]

    def bare(self) -> float:
        """The floor for any Python loop over these libraries: after the prompt, llama_decode on one
        token at a time through ctypes and a pointer to its logits, nothing else (no sampling, no
        bookkeeping)."""
        ctx, sequence = self.model.ctx, self.engine.sequence
        sequence.trim(0)
        sequence.feed(self.prompt)
        token = (llama_cpp.llama_token * 1)(self.prompt[0])
        batch = llama_cpp.llama_batch_get_one(token, 1)
        stamps = []
        for _ in range(self.tokens):
            llama_cpp.llama_decode(ctx, batch)
            llama_cpp.llama_get_logits_ith(ctx, -1)
            stamps.append(time.perf_counter())
        sequence.resync()  # drop the loop's tokens, which the engine's mirror of the cache never saw
        return decode_rate(stamps)

    def theirs(self, llama: llama_cpp.Llama, settings: dict) -> float:
        llama.reset()
        stamps = [time.perf_counter() for _ in llama.create_completion(
            PROMPT, max_tokens=self.tokens, stream=True, seed=1, temperature=settings["temp"],
            top_k=settings["top_k"], top_p=settings["top_p"], min_p=settings["min_p"],
            logit_bias={self.model.llama.token_eos(): -100.0})]
        return decode_rate(stamps)

    def cli_plain(self) -> float:
        """Through `backspace complete --format plain`, as the reader of its pipe sees the text arrive:
        from the first token's text to the end. With no delete token, each token's text is written
        as it comes, so starting Python and loading the model are not counted."""
        command = [sys.executable, "-m", "backspace_cli", "complete", "-m", str(self.path), "--format", "plain",
                   "--temp", "0", "-n", str(self.tokens), "-t", str(THREADS), "--logit-bias",
                   f"{self.model.llama.token_eos()}=-100", PROMPT]
        arrivals = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
            while os.read(process.stdout.fileno(), 1 << 16):
                arrivals.append(time.perf_counter())
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, command)
        return (self.tokens - 1) / (arrivals[-1] - arrivals[0])

    def prefill(self) -> float:
        """The mean rate of as many 512-token passes as llama-bench's pp512 makes, after one unmeasured
        pass, as llama-bench warms up: the first full batch after single-token decodes rebuilds
        llama.cpp's graph."""
        self._prefill_once()
        return statistics.mean(self._prefill_once() for _ in range(self.prefill_repetitions))

    def _prefill_once(self) -> float:
        self.engine.sequence.trim(0)
        start = time.perf_counter()
        self.engine.sequence.feed(self.prefill_prompt)
        return PREFILL_TOKENS / (time.perf_counter() - start)

    def step_costs(self) -> dict:
        return step_costs(self.model, self.engine.sequence, self.prompt)

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

    def every_tenth_a_delete(self) -> int:
        """Replies of the default sampler in which every 10th step draws the delete token instead
        (random weights make a bias's share of deletes jump about); the deletes they made."""
        settings, deletes = SAMPLERS["default"], 0
        for run in range(self.runs):
            draw = make_sampler(settings["temp"], settings["top_k"], settings["top_p"], settings["min_p"], seed=run)
            steps = iter(range(1, 1 << 30))
            sampler = lambda logits: self.delete_token if next(steps) % 10 == 0 else draw(logits)  # noqa: E731
            self.engine.sequence.trim(0)
            events = list(self.engine.generate(self.prompt, sampler=sampler, max_tokens=self.tokens,
                                               rules=DeleteRules(token_id=self.delete_token, max_deletes=10_000),
                                               logits_processors=[self.never_stop]))
            deletes += events[-1].counts.deletes
        return deletes

    def window_bytes(self) -> int:
        return (defaults.REWIND_WINDOW + 1) * self.model.n_vocab * 4 + self.model.n_vocab * 4


def recurrent_lines(tokens: int, runs: int, llama_bench: str) -> list[str]:
    """The tests' tiny Mamba and tiny LFM2 hybrid: a decode step against one delete within the window,
    before (a replay of the sequence: the same engine with no snapshots kept) and now (a snapshot
    restored), and how often a reply with 10% deletes still replayed."""
    directory = CACHE / "bench"
    directory.mkdir(parents=True, exist_ok=True)
    # The tests' models, and the same architectures 8 times wider, where a decode step does a small
    # model's work rather than mostly llama.cpp's fixed cost per call.
    models = {"tiny Mamba (recurrent), the tests'": tiny_models.build_mamba(directory / "tiny-mamba.gguf"),
              "tiny LFM2 (hybrid), the tests'": tiny_models.build_lfm2(directory / "tiny-lfm2.gguf"),
              "Mamba, width 512, 8 layers": tiny_models.build_mamba(directory / "mamba-512.gguf", n_embd=512,
                                                                   n_layer=8),
              "LFM2, width 512, 8 layers": tiny_models.build_lfm2(directory / "lfm2-512.gguf", n_embd=512,
                                                                 layers="cacc" * 2)}
    lines = ["\n| model | decode step | saving the state snapshot | share | one delete, before (a replay) | in decode steps |"
             " one delete, now (snapshot) | share | replies with a delete at every 10th step: deletes (the model's own"
             " draws too), replays, restores | snapshots kept |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, path in models.items():
        bench = Bench(path, tokens, runs, llama_bench)
        now = bench.step_costs()
        before = step_costs(bench.model, CacheSequence(bench.model, defaults.BATCH_SIZE, rewind=0), bench.prompt)
        snapshots = bench.engine.sequence.snapshots
        save = median_of(64, lambda: _timed(snapshots.save, len(bench.engine.sequence.tokens)))
        sequence = bench.engine.sequence
        sequence.rebuilds = sequence.restores = 0
        deletes = bench.every_tenth_a_delete()
        lines.append(f"| {name} | {now['decode'] * 1e6:.0f} µs | {save * 1e6:.1f} µs | {save / now['decode']:.1%} |"
                     f" {before['delete'] * 1e3:.1f} ms | {before['delete'] / before['decode']:.0f} |"
                     f" {now['delete'] * 1e6:.1f} µs | {now['delete'] / now['decode']:.1%} |"
                     f" {deletes}, {sequence.rebuilds}, {sequence.restores} |"
                     f" {snapshots.bytes / 1024:.0f} KiB |")
    # At the tests' width a step is mostly llama.cpp's fixed cost per call, so a delete's share there is
    # set against an attention model of the same width, whose delete needs no snapshot.
    attention = Bench(tiny_models.build_llama(directory / "tiny-llama.gguf"), tokens, runs, llama_bench).step_costs()
    lines.append(f"\nFor comparison, the tests' tiny llama (attention only, width 64, 2 layers): a decode step"
                 f" {attention['decode'] * 1e6:.0f} µs, one delete {attention['delete'] * 1e6:.1f} µs"
                 f" ({attention['delete'] / attention['decode']:.1%}).")
    return lines


def _timed(function, *arguments) -> float:
    start = time.perf_counter()
    function(*arguments)
    return time.perf_counter() - start


class LoopbackRpc:
    """SmolLM2 through one rpc-server on 127.0.0.1 (every layer on it) against the same model local: the
    decode rate, and what one delete costs when the KV cache's data lives on the server."""

    def __init__(self, path: Path, tokens: int, runs: int, rpc_server: str) -> None:
        self.tokens, self.runs = tokens, runs
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.server = subprocess.Popen([rpc_server, "-H", "127.0.0.1", "-p", str(port), "-t", str(THREADS)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.models = {"local": load_model(path, n_ctx=2048, n_threads=THREADS),
                       "rpc": load_model(path, n_ctx=2048, n_threads=THREADS, rpc_servers=(f"127.0.0.1:{port}",))}

    def close(self) -> None:
        self.models["rpc"].llama.close()  # its buffers are freed on the server, so before the server goes
        self.server.kill()
        self.server.wait()

    def decode(self, name: str) -> float:
        model = self.models[name]
        engine = Engine(model)
        never_stop = make_logit_bias({model.llama.token_eos(): -100.0})
        stamps = [time.perf_counter() for _ in engine.generate(
            model.tokenize(PROMPT, add_bos=True), sampler=make_sampler(0.0, 0, 1.0, 0.0, seed=1),
            max_tokens=self.tokens, logits_processors=[never_stop])]
        return decode_rate(stamps[:-1])

    def lines(self) -> list[str]:
        rates = {name: [] for name in self.models}
        for round_number in range(self.runs + 1):  # round 0 warms up
            for name in (list(self.models) if round_number % 2 else list(self.models)[::-1]):
                rate = self.decode(name)
                if round_number:
                    rates[name].append(rate)
        costs = {name: step_costs(model, Engine(model).sequence, model.tokenize(PROMPT, add_bos=True))
                 for name, model in self.models.items()}
        local_rate = statistics.median(rates["local"])
        lines = ["\n| SmolLM2, greedy, every layer on | decode (t/s) | against local | decode step |"
                 " one delete | delete / step |", "|---|---|---|---|---|---|"]
        for name, label in (("local", "this process (CPU)"), ("rpc", "one rpc-server on 127.0.0.1")):
            step, delete = costs[name]["decode"], costs[name]["delete"]
            rate = statistics.median(rates[name])
            lines.append(f"| {label} | {rate:.1f} | {rate / local_rate:.2f} | {step * 1e3:.2f} ms |"
                         f" {delete * 1e6:.0f} µs | {delete / step:.1%} |")
        return lines


def peer_lines(args, ours: tuple[float, float]) -> list[str]:
    """backtrack-sampler on SmolLM2, the same prompt, sampler and number of final tokens, against our
    engine's run with deletes above."""
    try:
        from peer import Peer
    except ImportError:
        return ["\nThe peer, backtrack-sampler, is not installed: `pip install -e '.[bench]'` (make bench does)."]
    peer = Peer(args.smollm2, THREADS, defaults.FLASH_ATTENTION)
    peer.run(PROMPT, args.tokens, SAMPLERS["default"])  # warm-up
    shares, rates = zip(*(peer.run(PROMPT, args.tokens, SAMPLERS["default"]) for _ in range(args.runs)))
    share, rate = statistics.median(shares), statistics.median(rates)
    return [f"\nThe peer, side by side on SmolLM2 ({args.tokens} final tokens, the default sampler, medians of"
            f" {args.runs} runs; bench/NOTES.md says how the work was made equal):",
            "\n| | share of steps taken back | final tokens per second | ours / theirs |", "|---|---|---|---|",
            f"| backspace, a delete token with a bias | {ours[0]:.1%} | {ours[1]:.1f} | {ours[1] / rate:.2f} |",
            f"| backtrack-sampler 3.2.1, one token rolled back every 10th step | {share:.1%} | {rate:.1f} | 1.00 |"]


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


def llama_tool(target: str) -> str:
    """The path of llama.cpp's program `target`, built (once, cached) from the wheel's own source."""
    return subprocess.run(["bash", str(LLAMA_TOOL), target], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHON": sys.executable}).stdout.strip()


def report(args) -> str:
    llama_bench = llama_tool("llama-bench")
    wide = build_wide_vocab_llama(CACHE / "bench" / "wide-vocab-262k.gguf")
    models = {"SmolLM2-135M-Instruct Q4_1 (49,152 tokens)": args.smollm2,
              "synthetic llama, 262,144-token vocabulary": wide}
    lines = []
    out = lines.append
    out("# backspace benchmark results\n")
    out(f"- machine: {cpu_name()}, {os.cpu_count()} cores, {THREADS} threads used")
    benches, decodes, prefills = {}, {}, {}
    for name, path in models.items():
        bench = benches[name] = Bench(path, args.tokens, args.runs, llama_bench)
        llama = llama_cpp.Llama(str(path), n_ctx=2048, n_threads=THREADS, n_threads_batch=THREADS, verbose=False,
                                flash_attn=defaults.FLASH_ATTENTION)
        measures = {"bare": bench.bare, "cli": bench.cli_plain}
        for sampler_name, settings in SAMPLERS.items():
            measures[f"ours {sampler_name}"] = lambda settings=settings: bench.ours(settings)
            measures[f"theirs {sampler_name}"] = lambda settings=settings, llama=llama: bench.theirs(llama, settings)
        measures["ours armed"] = lambda: bench.armed(SAMPLERS["default"])
        decodes[name] = bracketed(args.runs, bench.native_tg, measures)
        prefills[name] = bracketed(args.runs, bench.native_pp512, {"prefill": bench.prefill})
        del llama
    build = next(iter(benches.values())).build
    patches = ", ".join(sorted(path.name for path in (HERE.parent / "patches" / "llama.cpp").glob("*.patch")))
    out(f"- llama-cpp-python {llama_cpp.__version__}; llama.cpp build {build} (the wheel and llama-bench built"
        f" from the same vendored source, with patches/llama.cpp/ applied: {patches})")
    out(f"- {args.tokens} generated tokens. One warm-up round, then {args.runs} rounds in which every measure"
        " runs once, in an order that rotates from round to round. llama-bench runs first and again after"
        " every measure, and each measure is compared with the mean of the two llama-bench runs around it,"
        " since this VM's speed shifts by up to 20% within a minute. Rates are medians over the rounds;"
        " ratios are medians of the rounds' own ratios.")
    depths = ", ".join(f"{len(bench.prompt)} on {name.split(' (')[0]}" for name, bench in benches.items())
    repetitions = ", ".join(f"{bench.prefill_repetitions} on {name.split(' (')[0]}" for name, bench in benches.items())
    out(f"- Decode: llama-bench's tg runs once each time, after as many tokens as our prompt has ({depths}),"
        f" so that it decodes at the same positions as we do. Prefill: ours and pp512 are each the mean"
        f" of as many 512-token passes from an empty cache ({repetitions}).\n")
    out("| model | sampler | native tg (t/s) | ours, API (t/s) | ours / native | create_completion (t/s) |"
        " ours / create_completion | bare ctypes loop (t/s) | ours / bare |")
    out("|---|---|---|---|---|---|---|---|---|")
    # (label, our measure, create_completion's measure with the same sampler)
    decode_rows = [(sampler_name, f"ours {sampler_name}", f"theirs {sampler_name}") for sampler_name in SAMPLERS]
    decode_rows.append(("default, deletes armed", "ours armed", "theirs default"))
    for name, decode in decodes.items():
        for label, ours, theirs in decode_rows:
            out(f"| {name} | {label} | {statistics.median(decode.references):.1f} | {decode.median(ours):.1f} |"
                f" {decode.against_reference(ours):.2f} | {decode.median(theirs):.1f} | {decode.ratio(ours, theirs):.2f} |"
                f" {decode.median('bare'):.1f} | {decode.ratio(ours, 'bare'):.2f} |")
    out("\n| model | `backspace complete --format plain`, greedy (t/s) | ours / native tg |")
    out("|---|---|---|")
    for name, decode in decodes.items():
        out(f"| {name} | {decode.median('cli'):.1f} | {decode.against_reference('cli'):.2f} |")
    out("\n| model | our prefill, 512 tokens (t/s) | native pp512 (t/s) | ours / native |")
    out("|---|---|---|---|")
    for name, prefill in prefills.items():
        out(f"| {name} | {prefill.median('prefill'):.1f} | {statistics.median(prefill.references):.1f} |"
            f" {prefill.against_reference('prefill'):.2f} |")
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
        if "SmolLM2" in name:
            smollm2_deletes = (share, rate)
    out(f"\nRecurrent and hybrid models: a delete restores a snapshot of the recurrent state ({args.tokens}"
        " tokens; medians of 64 steps):")
    lines += recurrent_lines(args.tokens, args.runs, llama_bench)
    lines += peer_lines(args, smollm2_deletes)
    out(f"\nThrough llama.cpp's RPC backend ({args.tokens} tokens, medians of {args.runs} alternating rounds;"
        f" the server has {THREADS} threads):")
    loopback = LoopbackRpc(args.smollm2, args.tokens, args.runs, llama_tool("ggml-rpc-server"))
    try:
        lines += loopback.lines()
    finally:
        loopback.close()
    out("\n| model | the rewind window's saved logits | model resident memory |")
    out("|---|---|---|")
    for name, bench in benches.items():
        out(f"| {name} | {bench.window_bytes() / 2**20:.1f} MiB | {bench.model_rss / 2**20:.0f} MiB |")
    out(f"\n`backspace --help`: {help_seconds(args.runs):.3f} s (median)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smollm2", type=Path, default=smollm2())
    parser.add_argument("--tokens", type=int, default=256)
    # 7 rounds: the VM shifts speed in steps, and a median of 5 still moved between runs (bench/NOTES.md).
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    text = report(args)
    print(text)
    (HERE / "results.md").write_text(text)


if __name__ == "__main__":
    main()
