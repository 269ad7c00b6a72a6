"""backspace train on a pretrained model given as a GGUF (the tests' SmolLM2 Q4_1, which transformers unpacks
into a dense model): it trains and writes a GGUF that the engine opens with its delete token, and a recipe
that trains only the top layers leaves every other weight as it was, the rest of the vocabulary included."""
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from backspace_cli.cli.main import main  # noqa: E402
from backspace_cli.engine.model import load_model  # noqa: E402
from backspace_convert.keys import find_delete_token  # noqa: E402
from train_models import needs_converter, write_tasks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
import sorting  # noqa: E402

# Two steps: enough to see which weights move; the top two of SmolLM2's 30 layers train.
RECIPE = {"stages": ["sft"], "sft_steps": 2, "batch": 2, "train_layers": 2, "probe_tasks": 1, "eval_tasks": 1,
          "max_tokens": 8, "save_every": 10, "probe_every": 10}


@pytest.fixture(scope="module")
def run(smollm2_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    tasks = write_tasks(folder / "tasks.jsonl", sorting.tasks(4, seed=1, evaluation=False))
    held_out = write_tasks(folder / "held-out.jsonl", sorting.tasks(1, seed=1, evaluation=True))
    recipe = folder / "recipe.json"
    recipe.write_text(json.dumps(RECIPE), encoding="utf-8")
    out = folder / "sorting.gguf"
    result = CliRunner().invoke(main, ["train", str(tasks), "-m", str(smollm2_path), "-o", str(out),
                                       "--recipe", str(recipe), "--eval-tasks", str(held_out)])
    assert result.exit_code == 0, result.stderr
    return out


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@needs_converter
def test_a_gguf_model_trains_into_a_gguf_that_the_engine_opens_with_its_delete_token(run):
    model = load_model(run, n_ctx=256, n_threads=2)
    delete = find_delete_token(model.metadata.get, model.n_vocab, model.token_text, model.find_token)
    assert model.token_text(delete.id) == "<|delete|>"


@needs_converter
def test_only_the_top_layers_the_final_norm_and_the_delete_tokens_row_train_when_the_recipe_says_so(run):
    work = run.with_name("sorting.train")
    before, after = weights(work / "base"), weights(work / "sft" / "final")
    moved = {name for name in before if not (before[name] == after[name]).all()}
    assert moved and all(name.startswith(("model.layers.28.", "model.layers.29.", "model.norm.")) for name in moved
                         if name != "model.embed_tokens.weight")
    embeddings = before["model.embed_tokens.weight"]  # SmolLM2's output head is tied to them
    rows = (embeddings != after["model.embed_tokens.weight"]).any(1).nonzero().flatten()
    assert rows.tolist() == [len(embeddings) - 1]  # the delete token's, appended last
