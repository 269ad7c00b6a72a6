"""`backspace synth`: correct samples in, the same samples with injected errors and their deletes out."""
import json
import statistics
from pathlib import Path
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from backspace_convert.errors import UserError
from backspace_convert.keys import DELETE_TOKEN_TEXT, find_delete_token
from .. import defaults
from ..default_model import model_or_builtin
from ..engine.model import Model
from ..engine.session import Session
from ..settings import Settings
from .hf_tokenizer import HFTokenizer, is_hf_tokenizer
from .jsonl import bad_line, read_json_lines
from .labels import IGNORE
from .layout import SampleLayout
from .strategies import MODEL_PREFIX, Strategy, TextTokens, model_strategy, random_strategy, reply_strategy

PROGRESS_MIN_SAMPLES = 200  # fewer than this finish before a progress bar would help


@dataclass(frozen=True)
class SynthOptions:
    rate: float = defaults.SYNTH_RATE  # chance of an error before each response token (and before its end)
    max_errors: int = defaults.SYNTH_MAX_ERRORS  # errors per sample, at most
    error_tokens: int = defaults.SYNTH_ERROR_TOKENS  # longest error: k wrong tokens then k deletes, k from 1..this
    seed: int = defaults.SYNTH_SEED
    marker: str | None = None  # write this text for a delete instead of the delete token
    top_k: int = defaults.SYNTH_TOP_K  # model strategy: how many of the model's top alternatives to sample from


@dataclass
class Sample:
    """One input line: chat messages, or a plain text (trained on whole)."""

    line: int
    messages: list[dict] | None = None
    text: str | None = None
    extra: dict = field(default_factory=dict)  # other keys of the input object, passed through


@dataclass
class Synthesized:
    record: dict  # the output line
    input_ids: list[int]
    labels: list[int]  # IGNORE for the prompt and the errors; the delete tokens are learned
    errors: int
    error_tokens: int
    clean_length: int  # tokens of the same sample without errors


@dataclass
class SynthStats:
    samples: int = 0
    with_errors: int = 0
    errors: int = 0
    error_tokens: int = 0
    unaligned: int = 0  # responses whose tokens do not spell their text: left without errors
    clean_lengths: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def add(self, result: Synthesized) -> None:
        self.samples += 1
        self.with_errors += result.errors > 0
        self.errors += result.errors
        self.error_tokens += result.error_tokens
        self.clean_lengths.append(result.clean_length)
        self.lengths.append(len(result.input_ids))

    def summary(self) -> dict:
        return {
            "samples": self.samples,
            "samples_with_errors": self.with_errors,
            "errors": self.errors,
            "error_tokens": self.error_tokens,
            "unaligned": self.unaligned,
            "tokens": _distribution(self.lengths),
            "clean_tokens": _distribution(self.clean_lengths),
        }


def _distribution(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "mean": 0.0, "p90": 0, "max": 0}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": int(statistics.median_low(ordered)),
        "mean": round(statistics.fmean(ordered), 1),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
    }


def read_samples(lines: Iterable[str]) -> Iterator[Sample]:
    """JSONL of {"prompt","response"} or {"messages"}; a line that is not a JSON object is plain text."""
    for number, data in read_json_lines(lines, text_lines=True):
        yield Sample(number, text=data) if isinstance(data, str) else _parse_object(number, data)


def _parse_object(number: int, data: dict) -> Sample:
    extra = {key: value for key, value in data.items() if key not in ("prompt", "response", "system", "messages")}
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        ):
            raise bad_line(number, 'messages must be a list of {"role", "content"} strings')
        return Sample(number, messages=[dict(m) for m in messages], extra=extra)
    if isinstance(data.get("prompt"), str) and isinstance(data.get("response"), str):
        messages = [{"role": "user", "content": data["prompt"]}, {"role": "assistant", "content": data["response"]}]
        if isinstance(data.get("system"), str):
            messages.insert(0, {"role": "system", "content": data["system"]})
        return Sample(number, messages=messages, extra=extra)
    raise bad_line(number, 'expected {"prompt", "response"} or {"messages"} (strings)')


class Synthesizer:
    """Injects errors into samples, tokenized by a model's tokenizer (a GGUF's, or an HF one); the model
    strategy also decodes with the model, in `sequence`."""

    def __init__(self, tokenizer: "Model | HFTokenizer", strategy: str, options: SynthOptions, *,
                 need_delete_id: bool, sequence=None) -> None:
        self.model = tokenizer
        self.options = options
        self.rng = np.random.default_rng(options.seed)
        delete = find_delete_token(tokenizer.metadata.get, tokenizer.n_vocab, tokenizer.token_text, tokenizer.find_token)
        self.delete_text = options.marker or (delete.text if delete else DELETE_TOKEN_TEXT)
        if options.marker:
            self.delete_ids = tokenizer.tokenize(options.marker, add_bos=False, special=True)
        elif delete is not None:
            self.delete_ids = [delete.id]
        elif need_delete_id:
            raise UserError(
                f"{tokenizer.path.name} has no delete token, so a delete would be plain text to the model: add "
                f"{DELETE_TOKEN_TEXT} as a special token (an HF tokenizer) or convert the model first (backspace "
                "convert), or give --marker TEXT"
            )
        else:
            self.delete_ids = []
        self.vocabulary = TextTokens(tokenizer, excluded=set(self.delete_ids))
        self.layout = SampleLayout(tokenizer)
        if strategy == "model":
            self.strategy: Strategy = model_strategy(self.vocabulary, self.rng, options.top_k, sequence)
        elif strategy == "reply":
            self.strategy = reply_strategy(self.vocabulary, self.rng)
        else:
            self.strategy = random_strategy(self.vocabulary, self.rng)
        self.unaligned = 0

    def __call__(self, sample: Sample) -> Synthesized:
        if sample.text is not None:
            parts = self.layout.text(sample.text)
        else:
            parts = self.layout.chat(sample.messages, sample.line)
        input_ids: list[int] = []
        labels: list[int] = []
        clean_length = errors = error_tokens = 0
        contents: list[str] = []
        budget = self.options.max_errors
        for kind, value in parts:
            if kind == "prompt":
                input_ids += value
                labels += [IGNORE] * len(value)
                clean_length += len(value)
            elif kind == "end":  # the end of an assistant turn is learned: the model must stop
                input_ids += value
                labels += value
                clean_length += len(value)
            else:
                text, ids, tids, made, made_tokens = self._inject(value, input_ids, budget)
                budget -= made
                errors += made
                error_tokens += made_tokens
                contents.append(text)
                input_ids += ids
                labels += tids
                clean_length += len(ids) - made_tokens - made_tokens * len(self.delete_ids)
        return Synthesized(self._record(sample, contents), input_ids, labels, errors, error_tokens, clean_length)

    def _record(self, sample: Sample, contents: list[str]) -> dict:
        if sample.text is not None:
            return {"text": contents[0], **sample.extra}
        answers = iter(contents)
        messages = [
            {**m, "content": next(answers)} if m["role"] == "assistant" else m for m in sample.messages
        ]
        return {"messages": messages, **sample.extra}

    def _inject(self, content: str, context: list[int], budget: int):
        """(text with errors, ids, labels, errors made, wrong tokens made) for one response."""
        truth = self.model.tokenize(content, add_bos=False, special=False)
        pieces = [self.model.piece(token) for token in truth]
        joined, wanted = b"".join(pieces), content.encode("utf-8")
        lead = len(joined) - len(wanted)  # SentencePiece may invent one leading space
        if lead not in (0, 1) or joined[lead:] != wanted or joined[:lead] not in (b"", b" "):
            self.unaligned += 1
            return content, truth, list(truth), 0, 0
        ends = np.cumsum([0] + [len(piece) for piece in pieces])
        positions = [i for i in range(len(truth) + 1) if i == len(truth) or _starts_character(joined, ends[i])]
        chosen = [i for i in positions if self.rng.random() < self.options.rate]
        if len(chosen) > budget:
            chosen = sorted(self.rng.choice(chosen, size=budget, replace=False).tolist()) if budget > 0 else []
        errors_at = {}
        for i in chosen:
            count = int(self.rng.integers(1, self.options.error_tokens + 1))
            errors_at[i] = self.strategy(context + truth[:i], joined[ends[i] :], truth, count)
        text = bytearray()
        ids: list[int] = []
        labels: list[int] = []
        delete_bytes = self.delete_text.encode("utf-8")
        for i in range(len(truth) + 1):
            wrong = errors_at.get(i, [])
            for token in wrong:
                text += self.model.piece(token)
            text += delete_bytes * len(wrong)
            ids += wrong + self.delete_ids * len(wrong)
            labels += [IGNORE] * len(wrong) + self.delete_ids * len(wrong)
            if i < len(truth):
                text += pieces[i]
                ids.append(truth[i])
                labels.append(truth[i])
        wrong_tokens = sum(len(w) for w in errors_at.values())
        return bytes(text[lead:]).decode("utf-8"), ids, labels, len(errors_at), wrong_tokens


def _starts_character(data: bytes, offset: int) -> bool:
    return offset >= len(data) or not 0x80 <= data[offset] < 0xC0


def parse_strategy(spec: str) -> tuple[str, str | None]:
    """"random", "reply" or "model:PATH.gguf" -> (kind, path)."""
    if spec in ("random", "reply"):
        return spec, None
    if spec.startswith(MODEL_PREFIX) and len(spec) > len(MODEL_PREFIX):
        return "model", spec[len(MODEL_PREFIX) :]
    raise UserError(f"unknown strategy {spec!r}: use random, reply or model:PATH.gguf")


def synthesize(
    samples: Iterable[Sample],
    synthesizer: Synthesizer,
    output: TextIO,
    tokenized: TextIO | None = None,
    progress=None,
) -> SynthStats:
    """Write one output line (and one tokenized line) per sample; `progress` is called after each."""
    stats = SynthStats()
    for sample in samples:
        result = synthesizer(sample)
        stats.add(result)
        output.write(json.dumps(result.record, ensure_ascii=False) + "\n")
        if tokenized is not None:
            tokenized.write(json.dumps({"input_ids": result.input_ids, "labels": result.labels}) + "\n")
        if progress is not None:
            progress()
    stats.unaligned = synthesizer.unaligned
    return stats


def open_synthesizer(strategy: str, tokenizer: str | None, options: SynthOptions, *, tokenized: bool) -> Synthesizer:
    """Open the model that tokenizes (and, for model:PATH, proposes the errors) and wrap it."""
    kind, strategy_path = parse_strategy(strategy)
    if kind == "model":
        if tokenizer is not None and Path(tokenizer).resolve() != Path(strategy_path).resolve():
            raise UserError("with model:PATH the errors are that model's tokens: --tokenizer must be the same file")
        session = Session(Settings(model=strategy_path))
        return Synthesizer(session.model, kind, options, need_delete_id=tokenized, sequence=session.engine.sequence)
    if tokenizer is not None and is_hf_tokenizer(tokenizer):  # the tokenizer of a model still to be trained
        return Synthesizer(HFTokenizer(tokenizer), kind, options, need_delete_id=True)
    if tokenized and tokenizer is None:  # the built-in model's ids would mean nothing to the user's model
        raise UserError("--tokenized writes token ids, which fit one tokenizer only: name it with --tokenizer "
                        "PATH.gguf or an HF tokenizer (or use --strategy model:PATH.gguf)")
    settings = Settings(model=model_or_builtin(tokenizer, "--tokenizer PATH.gguf"),
                        ctx_size=defaults.TOKENIZER_CONTEXT_SIZE)
    return Synthesizer(Session(settings).model, kind, options, need_delete_id=tokenized)


def run_synth(
    source: TextIO,
    output: TextIO,
    tokenized: TextIO | None,
    synthesizer: Synthesizer,
    *,
    total: int | None,
    console=None,
) -> SynthStats:
    """synthesize() with a rich progress bar on the console for long inputs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    samples = read_samples(source)
    show = console is not None and console.is_terminal and (total or 0) >= PROGRESS_MIN_SAMPLES
    if not show:
        return synthesize(samples, synthesizer, output, tokenized)
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("synth", total=total)
        return synthesize(samples, synthesizer, output, tokenized, progress=lambda: bar.advance(task))


def stats_tables(stats: SynthStats) -> list:
    """The end-of-run statistics as rich tables: the counts, then the tokens per sample."""
    from rich.table import Table

    summary = stats.summary()
    counts = Table(title="backspace synth", title_justify="left", show_header=False)
    counts.add_column()
    counts.add_column(justify="right")
    counts.add_row("samples", str(summary["samples"]))
    counts.add_row("samples with errors", str(summary["samples_with_errors"]))
    counts.add_row("errors injected", str(summary["errors"]))
    counts.add_row("wrong tokens injected", str(summary["error_tokens"]))
    if summary["unaligned"]:
        counts.add_row("replies left as they were (tokens do not spell them)", str(summary["unaligned"]))
    lengths = Table(title="tokens per sample", title_justify="left")
    for column in ("", "min", "median", "mean", "p90", "max"):
        lengths.add_column(column, justify="right" if column else "left")
    for key, label in (("clean_tokens", "clean"), ("tokens", "with errors")):
        d = summary[key]
        lengths.add_row(label, *(str(d[k]) for k in ("min", "median", "mean", "p90", "max")))
    return [counts, lengths]
