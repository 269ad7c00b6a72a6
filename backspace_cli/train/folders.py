"""The trainer's folders: a whole model folder appears at once or not at all, and checkpoints are taken only when complete."""
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE = "trainer_state.json"  # transformers' Trainer writes it last in a checkpoint: its presence means complete
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside `target` to fill; when the block ends normally it is renamed to
    `target`. An error or Ctrl-C removes it, and `target` never exists half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`: one whose trainer state was written whole."""
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else ():
        match = CHECKPOINT.match(path.name)
        if match and _complete(path):
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def incomplete_checkpoints(folder: Path) -> list[Path]:
    return [path for path in folder.glob("checkpoint-*") if CHECKPOINT.match(path.name) and not _complete(path)]


def _complete(checkpoint: Path) -> bool:
    try:
        json.loads((checkpoint / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True
