"""Train the built-in model from scratch: addition with injected errors, so that it learns to delete its slips.

    python training/train.py [--out backspace_cli/models/backspace-tiny.gguf]   (or: make demo-model)

Two stages, both fed by `backspace synth`, with the errors masked out of the loss:
1. wrong digits taken from the answer itself (`--strategy reply`), the slips that are hard to tell from
   the truth, mixed with a few random characters;
2. the stage-1 model's own plausible mistakes (`--strategy model:stage1.gguf`), the near-miss digits that
   sampling really produces, mixed with more wrong digits from the answer.
Everything is seeded: the same command with the same torch build gives the same file.
"""
import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# Sleep, not spin, while waiting for the other thread: on a shared 2-core machine spinning OpenMP
# threads slow training down several times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # backspace_cli, when run from a checkout without an install

import arithmetic  # noqa: E402
import export_gguf  # noqa: E402
import vocab  # noqa: E402
from tiny_llama import Config, TinyLlama  # noqa: E402

from backspace_cli.data.synth import IGNORE, SynthOptions, open_synthesizer, synthesize, read_samples  # noqa: E402


@dataclass
class Recipe:
    seed: int = 0
    n_embd: int = 128  # model width
    n_layer: int = 4  # blocks
    n_head: int = 4  # attention heads
    n_ff: int = 384  # feed-forward width
    context: int = 128  # longest sequence
    stage1_steps: int = 3500  # steps on wrong digits from the answer (and a few random characters)
    stage2_steps: int = 3000  # steps on the stage-1 model's own mistakes, mixed with more wrong digits
    batch: int = 64  # sequences per step
    lr: float = 3e-3  # peak learning rate
    warmup: int = 200  # steps of linear warm-up, then cosine decay to lr / 10
    weight_decay: float = 0.1
    reply_error_rate: float = 0.15  # synth --rate for wrong digits from the answer itself
    random_error_rate: float = 0.05  # synth --rate for random characters
    random_share: float = 0.25  # share of stage-1 samples that get random characters instead
    own_error_rate: float = 0.10  # synth --rate for the stage-1 model's own mistakes
    own_samples: int = 48_000  # stage-2 samples with the model's own mistakes (synth decodes for each error)
    max_errors: int = 2  # synth --max-errors
    error_tokens: int = 2  # synth --error-tokens: errors of up to this many tokens
    no_bos_share: float = 0.1  # share of sequences trained without BOS, for callers that leave it out
    chat_share: float = 0.15  # share of wrong-digit and own-mistake samples that are chats of 2 or 3 questions
    threads: int = 2
    # Written into the GGUF as the model's recommended sampling (general.sampling.*), which backspace
    # uses unless told otherwise: at temperature 1.5 the model slips, and its deletes lift accuracy
    # (README, "The built-in model"). Greedy decoding is more accurate still, with --temp 0.
    sampling: dict = field(default_factory=lambda: {"temp": 1.5, "top_k": 0, "top_p": 1.0, "min_p": 0.0})


LENGTH_POOL = 32  # batches whose samples are sorted by length together


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def as_chats(tasks: list[dict], recipe: Recipe, seed: int) -> list[dict]:
    """Group some consecutive tasks into chats of 2 or 3 exchanges; the rest stay single questions."""
    rng = random.Random(seed)
    samples, i = [], 0
    while i < len(tasks):
        size = rng.choice((2, 3)) if rng.random() < recipe.chat_share else 1
        group = tasks[i : i + size]
        i += size
        if len(group) == 1:
            samples.append(group[0])
            continue
        messages = []
        for task in group:
            messages += [{"role": "user", "content": task["prompt"]}, {"role": "assistant", "content": task["response"]}]
        samples.append({"messages": messages})
    return samples


def synth_data(tasks: list[dict], strategy: str, tokenizer: Path, recipe: Recipe, seed: int, build: Path, name: str,
               rate: float):
    """Run backspace synth over `tasks`; return the tokenized samples (input_ids, labels)."""
    source = build / f"{name}.tasks.jsonl"
    source.write_text("".join(json.dumps(task) + "\n" for task in tasks))
    options = SynthOptions(rate=rate, max_errors=recipe.max_errors, error_tokens=recipe.error_tokens, seed=seed)
    synthesizer = open_synthesizer(strategy, str(tokenizer), options, tokenized=True)
    with source.open() as lines, (build / f"{name}.jsonl").open("w") as out, (
        build / f"{name}.tokens.jsonl"
    ).open("w") as tokens:
        stats = synthesize(read_samples(lines), synthesizer, out, tokens)
    summary = stats.summary()
    log(f"synth {name} ({strategy.split(':')[0]}): {summary['samples']} samples, "
        f"{summary['samples_with_errors']} with errors, {summary['errors']} errors")
    with (build / f"{name}.tokens.jsonl").open() as tokens:
        samples = [json.loads(line) for line in tokens]
    return [sample for sample in samples if len(sample["input_ids"]) <= recipe.context]


def batches(samples: list[dict], recipe: Recipe, rng: np.random.Generator):
    """Endless shuffled batches, padded to their longest sequence; labels IGNORE on padding.

    Each batch holds samples of about the same length (sorted within pools of LENGTH_POOL batches),
    or the few long chats would pad every batch to several times the length of a single question."""
    pad = vocab.token_id(vocab.EOS)
    bos = vocab.token_id(vocab.BOS)
    lengths = np.array([len(sample["input_ids"]) for sample in samples])
    pool = recipe.batch * LENGTH_POOL
    while True:
        order = rng.permutation(len(samples))
        groups = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            groups += [chunk[i : i + recipe.batch] for i in range(0, len(chunk) - recipe.batch + 1, recipe.batch)]
        for group in rng.permutation(len(groups)):
            rows = []
            for index in groups[group]:
                ids, labels = samples[index]["input_ids"], samples[index]["labels"]
                if ids[0] == bos and rng.random() < recipe.no_bos_share:
                    ids, labels = ids[1:], labels[1:]
                rows.append((ids, labels))
            width = max(len(ids) for ids, _ in rows)
            x = torch.full((len(rows), width), pad, dtype=torch.long)
            y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
            for row, (ids, labels) in enumerate(rows):
                x[row, : len(ids)] = torch.tensor(ids)
                y[row, : len(labels)] = torch.tensor(labels)
            yield x, y


def loss_of(model: TinyLlama, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Position t predicts the label at t + 1; IGNORE labels (prompt, errors, padding) add nothing.
    logits = model(x)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, 1:].reshape(-1), ignore_index=IGNORE)


def train(model, samples, steps, recipe, rng, step0, total_steps, optimizer, probe) -> None:
    stream = batches(samples, recipe, rng)
    started = time.time()
    for step in range(step0, step0 + steps):
        lr = learning_rate(step, total_steps, recipe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = next(stream)
        loss = loss_of(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 250 == 0 or step + 1 == step0 + steps:
            rate = (step + 1 - step0) / (time.time() - started)
            log(f"step {step + 1}/{total_steps} loss {loss.item():.4f} lr {lr:.2e} ({rate:.1f} steps/s) {probe()}")


def learning_rate(step: int, total: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, total - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_probe(model: TinyLlama, samples: list[dict]):
    """Teacher-forced checks on held-out samples: answers right, errors deleted, no false deletes."""
    delete = vocab.token_id(vocab.DELETE)
    x = [s["input_ids"] for s in samples]
    y = [s["labels"] for s in samples]

    @torch.no_grad()
    def probe() -> str:
        model.eval()
        exact = caught = errors = false = clean = 0
        # What sampling at temperature 1.5 would do: delete after a slip, and not after a right token.
        p_after_error = p_after_clean = 0.0
        for start in range(0, len(x), 256):
            width = max(len(ids) for ids in x[start : start + 256])
            ids = torch.full((len(x[start : start + 256]), width), 0, dtype=torch.long)
            labels = torch.full_like(ids, IGNORE)
            for row, (i, l) in enumerate(zip(x[start : start + 256], y[start : start + 256])):
                ids[row, : len(i)], labels[row, : len(l)] = torch.tensor(i), torch.tensor(l)
            logits = model(ids)[:, :-1]
            guess = logits.argmax(-1)
            p_delete = torch.softmax(logits / 1.5, -1)[..., delete]
            target = labels[:, 1:]
            learned = target != IGNORE
            exact += ((guess == target) | ~learned).all(-1).sum().item()
            is_delete = learned & (target == delete)
            caught += (is_delete & (guess == delete)).sum().item()
            errors += is_delete.sum().item()
            clean_positions = learned & (target != delete)
            false += (clean_positions & (guess == delete)).sum().item()
            clean += clean_positions.sum().item()
            p_after_error += p_delete[is_delete].sum().item()
            p_after_clean += p_delete[clean_positions].sum().item()
        model.train()
        return (f"| held-out: all tokens right {exact / len(x):.3f}, errors caught {caught / max(1, errors):.3f}, "
                f"false deletes {false / max(1, clean):.4f}; at temp 1.5 p(delete) after an error "
                f"{p_after_error / max(1, errors):.3f}, elsewhere {p_after_clean / max(1, clean):.4f}")

    return probe


def make_optimizer(model: TinyLlama, recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)


def load_weights(model: TinyLlama, path: Path) -> None:
    """Read an export back (F32, so exactly): the inverse of export_gguf.export."""
    import gguf

    tensors = {tensor.name: tensor.data for tensor in gguf.GGUFReader(path).tensors}
    state = {torch_name: torch.tensor(np.array(tensors[gguf_name]))
             for gguf_name, torch_name in export_gguf.tensor_names(model.config.n_layer)}
    model.load_state_dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description="Train and export the built-in delete-aware model.")
    parser.add_argument("--out", type=Path, default=HERE.parent / "backspace_cli/models/backspace-tiny.gguf")
    parser.add_argument("--build", type=Path, default=HERE / "build", help="working files")
    parser.add_argument("--quick", action="store_true", help="a few steps only: a smoke test of the pipeline")
    parser.add_argument("--from-stage1", type=Path, metavar="GGUF",
                        help="skip stage 1: start stage 2 from this stage-1 export (BUILD/stage1.gguf)")
    args = parser.parse_args()
    recipe = Recipe()
    if args.quick:
        recipe.stage1_steps, recipe.stage2_steps = 20, 20
    sizes = (recipe.stage1_steps * recipe.batch, recipe.own_samples, 1000)
    if args.quick:
        sizes = (2000, 1000, 200)
    build = args.build
    build.mkdir(parents=True, exist_ok=True)
    log(f"recipe: {json.dumps(asdict(recipe))}")

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    config = Config(n_vocab=vocab.N_VOCAB, n_embd=recipe.n_embd, n_layer=recipe.n_layer, n_head=recipe.n_head,
                    n_head_kv=recipe.n_head, n_ff=recipe.n_ff, context=recipe.context)
    model = TinyLlama(config)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    tokenizer = export_gguf.export_model(model, build / "init.gguf")  # the vocabulary, for synth

    def wrong_digits(count: int, seed: int, name: str, evaluation: bool = False) -> list[dict]:
        tasks = as_chats(arithmetic.tasks(count, seed, evaluation), recipe, seed)
        return synth_data(tasks, "reply", tokenizer, recipe, seed, build, name, recipe.reply_error_rate)

    held_out = wrong_digits(sizes[2], recipe.seed + 2, "heldout", evaluation=True)
    probe = make_probe(model, held_out)
    # One cosine schedule over both stages; each stage has its own optimizer and its own data order.
    total = recipe.stage1_steps + recipe.stage2_steps
    if args.from_stage1:
        load_weights(model, args.from_stage1)
        stage1_model = args.from_stage1
        log(f"stage 1 from {stage1_model} {probe()}")
    else:
        random_count = int(sizes[0] * recipe.random_share)
        stage1 = wrong_digits(sizes[0] - random_count, recipe.seed + 1, "stage1-reply")
        stage1 += synth_data(arithmetic.tasks(random_count, recipe.seed + 5, False), "random", tokenizer, recipe,
                             recipe.seed + 5, build, "stage1-random", recipe.random_error_rate)
        train(model, stage1, recipe.stage1_steps, recipe, rng, 0, total, make_optimizer(model, recipe), probe)
        stage1_model = export_gguf.export_model(model, build / "stage1.gguf")

    stage2_tasks = as_chats(arithmetic.tasks(sizes[1], recipe.seed + 3, False), recipe, recipe.seed + 3)
    own = synth_data(stage2_tasks, f"model:{stage1_model}", stage1_model, recipe, recipe.seed + 3, build,
                     "stage2-own", recipe.own_error_rate)
    mixed = own + wrong_digits(len(own), recipe.seed + 4, "stage2-reply")
    train(model, mixed, recipe.stage2_steps, recipe, np.random.default_rng(recipe.seed + 4), recipe.stage1_steps,
          total, make_optimizer(model, recipe), probe)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_gguf.export_model(model, args.out, sampling=recipe.sampling)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
