"""The trained checkpoint as a backspace GGUF, named after its file, with the recipe's sampling as the model's recommendation and what it says about itself."""
from pathlib import Path

from backspace_convert import keys
from backspace_convert.plan import Value
from ..engine.session import RECOMMENDED_SAMPLING
from ..settings import BOUNDS
from .recipe import TrainRecipe


def sampling_metadata(sampling: dict) -> dict[str, Value]:
    """general.sampling.* keys, as llama.cpp's tools read them (and backspace, for settings left unset)."""
    import gguf

    metadata = {}
    for name, value in sampling.items():
        key, _ = RECOMMENDED_SAMPLING[name]
        kind = BOUNDS[name].kind
        metadata[key] = Value(kind(value), gguf.GGUFValueType.INT32 if kind is int else gguf.GGUFValueType.FLOAT32)
    return metadata


def introduction_metadata(description: str, examples: list[str]) -> dict[str, Value]:
    """backspace.description and backspace.examples (one question a line), where the recipe gives them."""
    import gguf

    metadata = {}
    if description:
        metadata[keys.DESCRIPTION] = Value(description, gguf.GGUFValueType.STRING)
    if examples:
        metadata[keys.EXAMPLES] = Value("\n".join(examples), gguf.GGUFValueType.STRING)
    return metadata


def gguf_stem(output: Path) -> str:
    """OUT.gguf -> OUT: the model's name, and its run folder's."""
    return output.name[: -len(".gguf")] if output.name.endswith(".gguf") else output.name


def export_gguf(checkpoint: Path, output: Path, *, outtype: str, recipe: TrainRecipe, force: bool, say) -> Path:
    from backspace_convert.hf_checkpoint import convert_checkpoint

    import gguf

    # Named after its file, not the checkpoint's folder (converters take "final" from stage/final/).
    metadata = ({gguf.Keys.General.NAME: Value(gguf_stem(output), gguf.GGUFValueType.STRING)} | sampling_metadata(recipe.sampling)
                | introduction_metadata(recipe.description, recipe.examples))
    return convert_checkpoint(checkpoint, output, outtype=outtype, force=force, metadata=metadata, report=say)
