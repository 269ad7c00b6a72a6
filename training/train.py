"""Train the built-in model from scratch on two-sum (training/twosum.py): supervised, then by reinforcement.

    python training/train.py [--out backspace_cli/models/backspace-tiny.gguf]   (or: make demo-model)

Every sample is a state the engine can really be in. After a delete the context is exactly the one
before the deleted token, so a flat "x e <delete> y" sample would train y under a context that never
occurs. Instead, at every state the target is the answer's next token while the reply so far can still
become the right answer, and <|delete|> once it cannot (a dead state), with one exception that makes
checking easier than choosing: after a wrong first number x, the reply learns both to delete and to go on
to its complement ("x+c", with c = target - x), because whether c is in the list is one look-up, where
whether x was right was a search. After c is deleted (and, greedily, banned), the model's next choice
there is to delete the "+" and then x: a depth-first search that the model steers. One question's
states are packed into one sequence, a tree: the clean reply, and each dead reply as a branch whose
tokens attend only to the engine's context in that state.
1. Supervised, on dead states made from the list's other numbers: the first numbers the model might
   wrongly choose, each with its complement, and wrong second numbers.
2. Supervised, on the dead states that the stage-1 model itself reaches, greedily (a search, with
   bans) and sampled, mixed with more of stage 1's. Its own mistakes are what the checker must catch,
   so this stage is the longer one; half its questions come after earlier exchanges, as in a chat.
3. Reinforcement (GRPO): groups of sampled replies per question, with the engine's delete semantics
   (training/rollout.py); the reward is a right answer less a cost per delete, with a KL term to the
   stage-2 model.
Everything is seeded: the same command with the same torch build gives the same file.
"""
import argparse
import copy
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # backspace_cli, when run from a checkout without an install

import export_gguf  # noqa: E402
from backspace_cli.data.labels import IGNORE  # noqa: E402
import rollout  # noqa: E402
import twosum  # noqa: E402
import vocab  # noqa: E402
from tiny_llama import Config, TinyLlama  # noqa: E402

DELETE, BOS, EOS = (vocab.token_id(t) for t in (vocab.DELETE, vocab.BOS, vocab.EOS))
USER, ASSISTANT = vocab.token_id("<|user|>"), vocab.token_id("<|assistant|>")
TEXTS = [text.replace("▁", " ") for text, _ in vocab.tokens()]
IDS = {text: i for i, text in enumerate(TEXTS) if len(text) == 1 or text in vocab.NUMBERS}
PLUS = IDS["+"]
WRITABLE_NUMBERS = range(1, 30)  # the numbers that are one token each: a complement outside is never written


@dataclass
class Recipe:
    seed: int = 0
    n_embd: int = 128  # model width
    n_layer: int = 4  # blocks
    n_head: int = 4  # attention heads
    n_ff: int = 384  # feed-forward width
    context: int = 512  # longest sequence: a chat of several questions
    stage1_steps: int = 800  # steps on dead states made from the list's other numbers
    stage2_steps: int = 1000  # steps on the stage-1 model's own dead states, mixed with stage 1's kind
    rl_steps: int = 20  # GRPO steps
    batch: int = 64  # sequences per step
    lr: float = 3e-3  # peak learning rate
    warmup: int = 200  # steps of linear warm-up, then cosine decay to lr / 10
    weight_decay: float = 0.1
    branches: int = 2  # wrong replies per question, each trained as its dead prefixes
    second_share: float = 0.3  # share of wrong replies that go wrong in the second number
    delete_weight: float = 1.0  # weight of a delete target in the loss
    go_on_share: float = 0.7  # after a wrong first number, the share of its target that goes on to the complement
    dead_depth: int = 3  # dead prefixes trained per wrong reply: "x", "x+" and "x+c"
    chat_share: float = 0.05  # share of stage-1 questions asked after 1 to 5 earlier exchanges
    stage2_chat_share: float = 0.5  # the same in stage 2, so that earlier exchanges do not cost answers in a chat
    own_tasks: int = 8000  # stage-2 questions on which the stage-1 model is run
    own_temperature: float = 1.0  # stage 2 also samples the stage-1 model at this temperature
    rl_prompts: int = 16  # questions per GRPO step
    rl_group: int = 8  # sampled replies per question
    rl_lr: float = 2e-5
    rl_temperature: float = 1.0
    rl_delete_cost: float = 0.02  # reward: 1 for the right answer, less this per delete
    rl_kl: float = 0.05  # weight of the KL term to the stage-2 model
    rl_max_tokens: int = 24
    threads: int = 1  # torch's sums depend on the thread count: one thread is what the shipped file was built with
    # Written into the GGUF as the model's recommended sampling (general.sampling.*): greedy, where the
    # model is most accurate, and where a delete bans the deleted token so the retry tries another.
    sampling: dict = field(default_factory=lambda: {"temp": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0})


LENGTH_POOL = 32  # batches whose samples are sorted by length together


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def encode(text: str) -> list[int]:
    """Our vocabulary's tokens for plain ASCII text, as llama.cpp tokenizes it."""
    return [IDS[piece] for piece in vocab.pieces(text)]


def decode(ids: list[int]) -> str:
    return "".join(TEXTS[i] for i in ids)


def turn(question: str) -> list[int]:
    return [USER] + encode(question) + [EOS, ASSISTANT]


def prompt_ids(history: list[dict], question: str) -> list[int]:
    """BOS, the earlier exchanges, then the question, as the chat template renders them."""
    ids = [BOS]
    for task in history:
        ids += turn(task["prompt"]) + encode(task["response"]) + [EOS]
    return ids + turn(question)


def complement(task: dict, first: int) -> int | None:
    """The token of the number that would make `first` (a token) the answer's first number, if it has one."""
    *_, total = twosum.numbers(task["prompt"])
    text = TEXTS[first]
    if not text.isdigit() or int(total) - int(text) not in WRITABLE_NUMBERS:
        return None
    return IDS[str(int(total) - int(text))]


def dead_targets(task: dict, reply: tuple[int, ...]) -> tuple[int, int]:
    """What a dead reply so far learns: its target, and a second target that shares the weight (IGNORE:
    none). A wrong first number learns to go on to "+" and then its complement as well as to delete: the
    check on the complement is the easy one, and a delete stays the next choice once they are banned."""
    goes_on = complement(task, reply[0])
    if goes_on is not None and reply == (reply[0],):
        return PLUS, DELETE
    if goes_on is not None and reply == (reply[0], PLUS):
        return goes_on, DELETE
    return DELETE, IGNORE


def packed(history: list[dict], task: dict, dead: set[tuple[int, ...]], context: int) -> dict | None:
    """One question's sample, packed as a tree: the chat with its last reply learned, then each dead reply
    as a branch off the longest prefix of the answer it shares, each of its tokens learning its
    dead_targets. Earlier replies are context only: learning them too would give a question asked in a
    chat several answers' worth of training, and the chooser would catch up with the checker.

    A branch token sees exactly what the engine would hold in that state: the prompt, the answer's
    prefix and the branch's own earlier tokens, at the engine's positions. `parents[i]` is the token
    before token i in its branch; `targets[i]` is what token i should predict (IGNORE: nothing), and
    `also[i]` a second target sharing the weight (IGNORE: none)."""
    ids, said = prompt_ids(history, task["prompt"]), encode(task["response"]) + [EOS]
    targets = [IGNORE] * (len(ids) - 1) + said + [IGNORE]
    ids += said
    if len(ids) > context:
        return None
    also = [IGNORE] * len(ids)
    parents = list(range(-1, len(ids) - 1))
    answer = encode(task["response"])
    reply_start = len(ids) - len(answer) - 1  # the final reply's first token
    children: dict[tuple[int, int], int] = {}
    for reply in sorted(dead):
        shared = next((i for i, (a, b) in enumerate(zip(reply, answer)) if a != b), min(len(reply), len(answer)))
        node = reply_start - 1 + shared  # the last token of the state it leaves the answer from
        for k in range(shared, len(reply)):
            if (node, reply[k]) not in children:
                children[node, reply[k]] = len(ids)
                ids.append(reply[k])
                parents.append(node)
                target, second = dead_targets(task, reply[: k + 1])
                targets.append(target)
                also.append(second)
            node = children[node, reply[k]]
    return {"input_ids": ids, "parents": parents, "targets": targets, "also": also}


def numbers_of(task: dict) -> list[str]:
    """The list's numbers, as written in the question (every number in it but the target, which is last)."""
    return twosum.numbers(task["prompt"])[:-1]


def wrong_replies(task: dict, rng: random.Random, recipe: Recipe) -> list[str]:
    """Plausible wrong replies: another of the list's numbers first, followed by its complement where it
    has one, or a wrong second number."""
    first, second = task["response"].split("+")
    others = [n for n in numbers_of(task) if n not in (first, second)]
    out = []
    for _ in range(recipe.branches):
        if rng.random() < recipe.second_share:
            out.append(f"{first}+{rng.choice(others + [first])}")
        else:
            wrong = rng.choice(others + [second])
            goes_on = complement(task, IDS[wrong])
            out.append(wrong if goes_on is None else f"{wrong}+{TEXTS[goes_on]}")
    return out


def dead_prefixes(text: str, response: str, depth: int) -> set[tuple[int, ...]]:
    """The first `depth` dead prefixes of a wrong reply, as tokens: where it leaves the answer, and after."""
    reply, answer = encode(text), encode(response)
    split = next((i for i, (a, b) in enumerate(zip(reply, answer)) if a != b), None)
    if split is None:
        return set()
    return {tuple(reply[: split + k]) for k in range(1, depth + 1) if split + k <= len(reply)}


def with_history(tasks: list[dict], rng: random.Random, chat_share: float) -> list[tuple[list[dict], dict]]:
    """Each task, after 1 to 5 earlier exchanges (other tasks) for a share of them."""
    out = []
    for task in tasks:
        history = rng.sample(tasks, rng.randint(1, 5)) if rng.random() < chat_share else []
        out.append(([t for t in history if t is not task], task))
    return out


def supervised(tasks: list[dict], seed: int, recipe: Recipe, chat_share: float,
               own: dict[str, set[tuple[int, ...]]] | None = None) -> list[dict]:
    """One packed sample per question: its clean reply, the dead states of wrong replies made from the
    list's numbers, and the dead replies in `own` (by question) that a model reached itself."""
    rng = random.Random(seed)
    samples = []
    for history, task in with_history(tasks, rng, chat_share):
        dead = set((own or {}).get(task["prompt"], ()))
        for wrong in wrong_replies(task, rng, recipe):
            dead |= dead_prefixes(wrong, task["response"], recipe.dead_depth)
        sample = packed(history, task, dead, recipe.context)
        if sample is not None:
            samples.append(sample)
    return samples


def rules(greedy: bool, enabled: bool = True, max_tokens: int = 24) -> rollout.Rules:
    return rollout.Rules(delete=DELETE, end=EOS, greedy=greedy, enabled=enabled, max_tokens=max_tokens)


def own_dead_states(model: TinyLlama, tasks: list[dict], recipe: Recipe,
                    generator: torch.Generator) -> dict[str, set[tuple[int, ...]]]:
    """The dead replies (as tokens) that `model` reaches on `tasks`, greedily and sampled, by question."""
    dead: dict[str, set[tuple[int, ...]]] = {}
    for greedy in (True, False):
        for start in range(0, len(tasks), 256):
            chunk = tasks[start : start + 256]
            runs = rollout.generate(model, [prompt_ids([], t["prompt"]) for t in chunk], rules(greedy),
                                    recipe.own_temperature, generator)
            for task, run in zip(chunk, runs):
                for step in run.steps:
                    reply = step.context[len(run.prompt) :]
                    if not twosum.alive([TEXTS[i] for i in reply], task["response"]):
                        dead.setdefault(task["prompt"], set()).add(reply)
    return dead


def batches(samples: list[dict], recipe: Recipe, rng: np.random.Generator):
    """Endless shuffled batches of packed samples: token ids, positions, attention masks, targets.

    Each batch holds samples of about the same length (sorted within pools of LENGTH_POOL batches),
    or the few long chats would pad every batch to several times the length of a single question."""
    lengths = np.array([len(s["input_ids"]) for s in samples])
    pool = recipe.batch * LENGTH_POOL
    while True:
        order = rng.permutation(len(samples))
        groups = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            groups += [chunk[i : i + recipe.batch] for i in range(0, len(chunk) - recipe.batch + 1, recipe.batch)]
        for group in rng.permutation(len(groups)):
            rows = [samples[i] for i in groups[group]]
            width = max(len(row["input_ids"]) for row in rows)
            x = np.full((len(rows), width), EOS)
            positions = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width, width), dtype=bool)
            y = np.full((len(rows), width), IGNORE)
            y_also = np.full((len(rows), width), IGNORE)
            for r, row in enumerate(rows):
                n = len(row["input_ids"])
                x[r, :n], y[r, :n], y_also[r, :n] = row["input_ids"], row["targets"], row["also"]
                for i, parent in enumerate(row["parents"]):
                    if parent >= 0:
                        mask[r, i] = mask[r, parent]
                        positions[r, i] = positions[r, parent] + 1
                    mask[r, i, i] = True
                mask[r, range(n, width), range(n, width)] = True  # padding sees itself, so no row is empty
            yield (torch.from_numpy(x), torch.from_numpy(positions), torch.from_numpy(mask),
                   torch.from_numpy(y), torch.from_numpy(y_also))


def loss_of(model: TinyLlama, x, positions, mask, y, y_also, recipe: Recipe) -> torch.Tensor:
    """Cross-entropy over the targets. A state with a second target splits its weight, go_on_share to
    going on; a lone delete target counts delete_weight."""
    log_probs = torch.log_softmax(model(x, positions, mask).float(), -1).reshape(-1, model.config.n_vocab)
    y, y_also = y.reshape(-1), y_also.reshape(-1)
    first = -log_probs.gather(1, y.clamp(min=0)[:, None])[:, 0]
    second = -log_probs.gather(1, y_also.clamp(min=0)[:, None])[:, 0]
    shared = y_also != IGNORE
    weights = torch.where(shared, recipe.go_on_share, torch.where(y == DELETE, recipe.delete_weight, 1.0))
    losses = first * weights * (y != IGNORE) + second * (1 - recipe.go_on_share) * shared
    return losses.sum() / (y != IGNORE).sum()


def learning_rate(step: int, total: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, total - recipe.warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: TinyLlama, lr: float, recipe: Recipe) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=recipe.weight_decay)


def train(model, samples, steps, recipe, rng, step0, total_steps, probe) -> None:
    optimizer = make_optimizer(model, recipe.lr, recipe)
    stream = batches(samples, recipe, rng)
    started = time.time()
    for step in range(step0, step0 + steps):
        lr = learning_rate(step, total_steps, recipe)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of(model, *next(stream), recipe)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 500 == 0 or step + 1 == step0 + steps:
            rate = (step + 1 - step0) / (time.time() - started)
            log(f"step {step + 1}/{total_steps} loss {loss.item():.4f} lr {lr:.2e} ({rate:.1f} steps/s) {probe()}")


def reinforce(model: TinyLlama, tasks: list[dict], recipe: Recipe, probe) -> None:
    """GRPO: sampled groups per question, the reward standardised within each group, a KL term to the
    model as it was before this stage. One update per batch of rollouts, so no ratio clipping."""
    reference = copy.deepcopy(model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    optimizer = make_optimizer(model, recipe.rl_lr, recipe)
    rng = random.Random(recipe.seed + 7)
    generator = torch.Generator().manual_seed(recipe.seed + 7)
    sampled = rules(greedy=False, max_tokens=recipe.rl_max_tokens)
    started = time.time()
    for step in range(recipe.rl_steps):
        chosen = rng.sample(tasks, recipe.rl_prompts)
        prompts = [prompt_ids([], t["prompt"]) for t in chosen for _ in range(recipe.rl_group)]
        runs = rollout.generate(model, prompts, sampled, recipe.rl_temperature, generator)
        right = torch.tensor([float(decode(run.tokens).strip() == chosen[i // recipe.rl_group]["response"])
                              for i, run in enumerate(runs)])
        deletes = torch.tensor([float(run.deletes) for run in runs])
        reward = (right - recipe.rl_delete_cost * deletes).view(recipe.rl_prompts, recipe.rl_group)
        advantage = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-4)).view(-1)
        model.train()
        log_probs = rollout.step_log_probs(model, runs, recipe.rl_temperature, EOS)
        with torch.no_grad():
            reference_log_probs = rollout.step_log_probs(reference, runs, recipe.rl_temperature, EOS)
        n_steps = sum(len(lp) for lp in log_probs)
        loss = 0.0
        for a, lp, ref in zip(advantage, log_probs, reference_log_probs):
            gap = ref - lp
            kl = torch.exp(gap) - gap - 1  # the k3 estimator of KL(policy || reference), per step
            loss = loss + (-a * lp + recipe.rl_kl * kl).sum()
        loss = loss / n_steps
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % 25 == 0 or step + 1 == recipe.rl_steps:
            rate = (step + 1) / (time.time() - started)
            log(f"rl step {step + 1}/{recipe.rl_steps} reward {reward.mean():.3f} right {right.mean():.3f} "
                f"deletes {deletes.mean():.2f} ({rate:.2f} steps/s) {probe()}")


def make_probe(model: TinyLlama, tasks: list[dict]):
    """Held-out accuracy, greedy, with deletes and without, decoded as the engine decodes."""
    prompts = [prompt_ids([], t["prompt"]) for t in tasks]

    def accuracy(enabled: bool) -> tuple[float, float]:
        runs = rollout.generate(model, prompts, rules(greedy=True, enabled=enabled))
        right = sum(decode(r.tokens).strip() == t["response"] for r, t in zip(runs, tasks))
        return right / len(tasks), sum(r.deletes for r in runs) / len(tasks)

    def probe() -> str:
        with_deletes, deletes = accuracy(True)
        without, _ = accuracy(False)
        return f"| held-out greedy: {with_deletes:.3f} with deletes ({deletes:.2f} a reply), {without:.3f} without"

    return probe


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
    parser.add_argument("--from-stage", type=Path, metavar="GGUF",
                        help="skip the supervised stages: start RL from this export (BUILD/stage2.gguf)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one of the recipe's settings, for experiments")
    args = parser.parse_args()
    recipe = Recipe()
    for setting in args.set:
        name, value = setting.split("=", 1)
        setattr(recipe, name, type(getattr(recipe, name))(value))
    if args.quick:
        recipe.stage1_steps, recipe.stage2_steps, recipe.rl_steps, recipe.own_tasks = 20, 20, 3, 200
    build = args.build
    build.mkdir(parents=True, exist_ok=True)
    log(f"recipe: {json.dumps(asdict(recipe))}")

    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    config = Config(n_vocab=vocab.N_VOCAB, n_embd=recipe.n_embd, n_layer=recipe.n_layer, n_head=recipe.n_head,
                    n_head_kv=recipe.n_head, n_ff=recipe.n_ff, context=recipe.context)
    model = TinyLlama(config)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    probe = make_probe(model, twosum.tasks(100 if args.quick else 300, recipe.seed + 2, evaluation=True))
    train_tasks = twosum.tasks(recipe.stage1_steps * recipe.batch, recipe.seed + 1, evaluation=False)  # each once
    total = recipe.stage1_steps + recipe.stage2_steps
    if args.from_stage:
        load_weights(model, args.from_stage)
        log(f"from {args.from_stage} {probe()}")
    else:
        stage1 = supervised(train_tasks, recipe.seed + 1, recipe, recipe.chat_share)
        log(f"stage 1: {len(stage1)} samples")
        train(model, stage1, recipe.stage1_steps, recipe, np.random.default_rng(recipe.seed + 1), 0, total, probe)
        export_gguf.export_model(model, build / "stage1.gguf")

        own_tasks = twosum.tasks(recipe.own_tasks, recipe.seed + 3, evaluation=False)
        own = own_dead_states(model, own_tasks, recipe, generator)
        log(f"stage 2: {sum(map(len, own.values()))} dead replies of the model's own, on {len(own)} questions")
        more = twosum.tasks(recipe.stage2_steps * recipe.batch - len(own_tasks), recipe.seed + 4, False)
        stage2 = (supervised(own_tasks, recipe.seed + 3, recipe, recipe.stage2_chat_share, own)
                  + supervised(more, recipe.seed + 4, recipe, recipe.stage2_chat_share))
        train(model, stage2, recipe.stage2_steps, recipe, np.random.default_rng(recipe.seed + 4),
              recipe.stage1_steps, total, probe)
        export_gguf.export_model(model, build / "stage2.gguf")

    reinforce(model, train_tasks, recipe, probe)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_gguf.export_model(model, args.out, sampling=recipe.sampling)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
