"""The trained checkpoint as a backspace GGUF, with the recipe's sampling written in as the model's recommendation."""
from pathlib import Path

from backspace_convert.plan import Value
from ..engine.session import RECOMMENDED_SAMPLING
from ..settings import BOUNDS


def sampling_metadata(sampling: dict) -> dict[str, Value]:
    """general.sampling.* keys, as llama.cpp's tools read them (and backspace, for settings left unset)."""
    import gguf

    metadata = {}
    for name, value in sampling.items():
        key, _ = RECOMMENDED_SAMPLING[name]
        kind = BOUNDS[name].kind
        metadata[key] = Value(kind(value), gguf.GGUFValueType.INT32 if kind is int else gguf.GGUFValueType.FLOAT32)
    return metadata


def export_gguf(checkpoint: Path, output: Path, *, outtype: str, sampling: dict, force: bool, say) -> Path:
    from backspace_convert.hf_checkpoint import convert_checkpoint

    return convert_checkpoint(checkpoint, output, outtype=outtype, force=force, metadata=sampling_metadata(sampling),
                              report=say)
