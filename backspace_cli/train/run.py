"""`backspace train` as a function: the tasks, the model, the recipe's stages in order, each resumable, then the GGUF."""
import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backspace_convert.errors import UserError
from .folders import atomic_folder, incomplete_checkpoints, latest_checkpoint
from .model_setup import ATTENTION, ModelBundle, load_bundle, train_only_top_layers
from .progress import ProbeResult, SaveOnInterrupt, StageProgress
from .recipe import TrainRecipe
from .tasks import TrainTask, make_scorer, read_train_tasks, split_held_out

RUN_FILE = "run.json"  # in the work folder: the job, so that --resume needs nothing else
BASE, FINAL = "base", "final"  # the model as it started; a stage's model once the stage is done


class Interrupted(Exception):
    """A stage stopped at a checkpoint on Ctrl-C: the run goes on with --resume."""


@dataclass
class TrainJob:
    tasks: str
    output: str
    work: str
    model: str | None = None
    from_scratch: str | None = None
    tokenizer: str | None = None
    eval_tasks: str | None = None
    scoring: str = "exact"
    outtype: str = "f32"
    recipe: dict = field(default_factory=dict)

    def save(self) -> None:
        Path(self.work).mkdir(parents=True, exist_ok=True)
        path = Path(self.work) / RUN_FILE
        temporary = path.with_suffix(".partial")
        temporary.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")
        temporary.replace(path)

    @classmethod
    def load(cls, work: Path) -> "TrainJob":
        try:
            return cls(**json.loads((work / RUN_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:
            raise UserError(f"--resume {work}: not a training run's folder ({error})") from None


@dataclass
class StageReport:
    stage: str
    steps: int
    seconds: float
    last_log: dict
    probes: list[ProbeResult]
    logs: list[dict]


def read_task_file(path: str) -> list[TrainTask]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as lines:
            return read_train_tasks(lines)
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not a task file") from None
    except OSError as error:
        raise UserError(f"{path}: {error.strerror}") from None
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def train(job: TrainJob, recipe: TrainRecipe, say) -> tuple[ModelBundle, list[StageReport], list[TrainTask]]:
    """Run the recipe's stages that are not done yet; return the trained model, a report per stage run,
    and the held-out tasks."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # loading bars per model; the stages have their own
    tasks = read_task_file(job.tasks)
    held_out = read_task_file(job.eval_tasks) if job.eval_tasks else None
    tasks, held_out, dropped = split_held_out(tasks, held_out, recipe.held_out_share, recipe.seed)
    if dropped:
        say(f"{dropped} training tasks dropped: a held-out task asks the same")
    say(f"{len(tasks)} training tasks, {len(held_out)} held out")
    scorer = make_scorer(job.scoring)
    work = Path(job.work)
    bundle = _base(job, work, tasks + held_out, recipe.seed, say)
    probe_tasks = held_out[: recipe.probe_tasks]
    reports = []
    for stage in recipe.stages:
        done = work / stage / FINAL
        if done.is_dir():
            say(f"{stage}: done before, loading {done}")
            bundle.model = _load_model(done)
            continue
        reports.append(_run_stage(stage, bundle, tasks, probe_tasks, scorer, recipe, work, say))
    return bundle, reports, held_out


def _base(job: TrainJob, work: Path, tasks: list[TrainTask], seed: int, say) -> ModelBundle:
    """The model as training starts, delete token added, saved once so that a resumed run starts the same."""
    base = work / BASE
    if base.is_dir():
        return load_bundle(str(base), None, None, [], seed)
    texts = [content for task in tasks for _, content in task.messages] + [a for task in tasks for a in task.answers]
    bundle = load_bundle(job.model, job.from_scratch, job.tokenizer, texts, seed)
    n = sum(p.numel() for p in bundle.model.parameters())
    say(f"model: {job.model or 'from scratch, ' + job.from_scratch}, {n:,} parameters, "
        f"delete token id {bundle.delete_id}")
    with atomic_folder(base) as folder:
        bundle.model.save_pretrained(folder)
        bundle.tokenizer.save_pretrained(folder)
    return bundle


def _load_model(folder: Path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="float32", attn_implementation=ATTENTION)


def _run_stage(stage: str, bundle: ModelBundle, tasks: list[TrainTask], probe_tasks: list[TrainTask], scorer,
               recipe: TrainRecipe, work: Path, say) -> StageReport:
    import time

    import transformers

    from .stages import CheckpointWriteError, GroupTrainer, TreeTrainer
    from .states import likeliest_wrong, question_tree
    from .tree import collate

    steps = recipe.steps(stage)
    folder = work / stage
    transformers.set_seed(recipe.seed)
    train_only_top_layers(bundle.model, recipe.train_layers, bundle.delete_id)
    if stage == "grpo":
        data, collator, per_step = tasks, list, recipe.grpo_prompts
    else:
        if recipe.deletes:
            wrong = likeliest_wrong(bundle, tasks, recipe.wrong_per_question,
                                    label=f"{stage}: the model's likeliest mistakes")
            if stage == "own":
                _add_own_mistakes(bundle, tasks, wrong, recipe, say)
        else:
            wrong = [set() for _ in tasks]
        data = [question_tree(bundle, task, w, recipe.delete_weight, recipe.go_on_share, recipe.look_ahead)
                for task, w in zip(tasks, wrong)]
        collator, per_step = (lambda trees: collate(trees, bundle.reply_end)), recipe.batch
    args = transformers.TrainingArguments(
        output_dir=str(folder), max_steps=steps, per_device_train_batch_size=per_step,
        learning_rate=recipe.lr(stage), lr_scheduler_type="cosine", warmup_steps=int(recipe.warmup_ratio * steps),
        weight_decay=recipe.weight_decay, max_grad_norm=1.0, seed=recipe.seed, save_strategy="steps",
        save_steps=recipe.save_every, save_total_limit=2, logging_steps=max(1, min(10, steps // 10)),
        report_to="none", dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
        disable_tqdm=True,  # StageProgress draws the bar
    )
    progress = StageProgress(stage, bundle, probe_tasks, scorer, recipe.max_tokens, recipe.probe_every)
    interrupt = SaveOnInterrupt()
    options = dict(model=bundle.model, args=args, train_dataset=data, data_collator=collator,
                   callbacks=[progress, interrupt])
    trainer = (GroupTrainer(**options, bundle=bundle, recipe=recipe, scorer=scorer) if stage == "grpo"
               else TreeTrainer(**options))
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # StageProgress shows the logs
    for partial in incomplete_checkpoints(folder):
        say(f"{stage}: {partial.name} was not written whole: removed")
        shutil.rmtree(partial)
    resume = latest_checkpoint(folder)
    if resume is not None:
        say(f"{stage}: resuming from {resume.name}")
    started = time.perf_counter()
    interrupt.install()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except CheckpointWriteError as error:
        for partial in incomplete_checkpoints(folder):
            shutil.rmtree(partial)
        kept = latest_checkpoint(folder)
        raise UserError(f"{stage}: {error}; " + (f"{kept.name} stays: resume with backspace train --resume {work}"
                                                 if kept else "no earlier checkpoint")) from None
    finally:
        interrupt.restore()
    if interrupt.interrupted:
        raise Interrupted(f"{stage} stopped at step {trainer.state.global_step}, saved")
    with atomic_folder(folder / FINAL) as final:
        trainer.save_model(str(final))
        bundle.tokenizer.save_pretrained(final)
    last = next((log for log in reversed(progress.logs) if "loss" in log or "train_loss" in log), {})
    return StageReport(stage, steps, time.perf_counter() - started, last, progress.history, progress.logs)


def _add_own_mistakes(bundle: ModelBundle, tasks: list[TrainTask], wrong: list[set], recipe: TrainRecipe, say) -> None:
    """Have the model answer a share of the tasks without deletes, greedily and sampled, and add each wrong
    reply, as it wrote it, to that task's."""
    import torch
    from tqdm.auto import tqdm

    from ..engine.delete_rules import DeleteRules
    from .rollout import roll_out
    from .states import alive

    order = list(range(len(tasks)))
    random.Random(recipe.seed + 1).shuffle(order)
    chosen = order[: recipe.own_tasks]
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    rules = DeleteRules(bundle.delete_id, enabled=False)
    found = 0
    for temperature in (0.0, recipe.own_temperature):
        kind = "greedy" if temperature == 0 else f"at temperature {temperature:g}"
        for index in tqdm(chosen, desc=f"own: answering {kind}", unit="task", dynamic_ncols=True):
            task = tasks[index]
            reply = tuple(roll_out(bundle.model, bundle.prompt_ids(task), rules, bundle.end_ids,
                                   max_tokens=recipe.max_tokens, temperature=temperature, generator=generator).tokens)
            if reply not in wrong[index] and not alive(bundle, task, reply):
                wrong[index].add(reply)
                found += 1
    say(f"own: {found} wrong replies of the model's own, on {len(chosen)} tasks")


def held_out_ab(gguf_path: Path, held_out: list[TrainTask], scoring: str, recipe: TrainRecipe):
    """The exported model through backspace eval on the held-out tasks: deletes on against banned, same
    seeds, at the model's recommended sampling and greedily. (Tasks of one user message, first answer.)"""
    from ..data.evaluation import Evaluator
    from ..data.tasks import Task
    from ..engine.session import Session
    from ..settings import Settings

    tasks = [Task(task.messages[0][1], task.answers[0]) for task in held_out[: recipe.eval_tasks]
             if len(task.messages) == 1 and task.messages[0][0] == "user"]
    if not tasks:
        return None, []
    session = Session(Settings(model=str(gguf_path), max_tokens=recipe.max_tokens, seed=recipe.seed))
    evaluator = Evaluator(session, scoring=scoring if scoring in ("exact", "contains") else "exact", greedy=True)
    return evaluator, evaluator.run(tasks)
