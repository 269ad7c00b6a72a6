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


def source_vocabulary_metadata(source: Path, delete_text: str) -> dict[str, Value]:
    """A GGUF model's own tokenizer keys, with the delete token appended where it lacks one, as the trained
    model's: transformers reads a GGUF's tokenizer approximately (a BPE one without its pre-tokenizer),
    and llama.cpp's converter, given that, writes another kind of vocabulary that llama.cpp cannot load."""
    import gguf

    from backspace_convert.plan import APPENDED_SCORE
    from backspace_convert.vocab import TokenType, field_value

    reader = gguf.GGUFReader(source)
    metadata = {}
    for key, found in reader.fields.items():
        if key.startswith("tokenizer.") and found.types:
            sub_type = found.types[1] if found.types[0] == gguf.GGUFValueType.ARRAY else None
            metadata[key] = Value(field_value(reader, key), found.types[0], sub_type)
    tokens = metadata[gguf.Keys.Tokenizer.LIST].value
    if delete_text not in tokens:
        appended = {gguf.Keys.Tokenizer.LIST: delete_text, gguf.Keys.Tokenizer.TOKEN_TYPE: int(TokenType.CONTROL),
                    gguf.Keys.Tokenizer.SCORES: APPENDED_SCORE}
        for key, value in appended.items():
            if key in metadata:
                metadata[key] = Value([*metadata[key].value, value], metadata[key].type, metadata[key].sub_type)
    return metadata


def gguf_stem(output: Path) -> str:
    """OUT.gguf -> OUT: the model's name, and its run folder's."""
    return output.name[: -len(".gguf")] if output.name.endswith(".gguf") else output.name


def export_gguf(checkpoint: Path, output: Path, *, outtype: str, recipe: TrainRecipe, source: Path | None, force: bool,
                say) -> Path:
    """The checkpoint as a GGUF; `source`, the GGUF that training started from, gives it its vocabulary."""
    from backspace_convert.hf_checkpoint import convert_checkpoint

    import gguf

    # Named after its file, not the checkpoint's folder (converters take "final" from stage/final/).
    metadata = ({gguf.Keys.General.NAME: Value(gguf_stem(output), gguf.GGUFValueType.STRING)} | sampling_metadata(recipe.sampling)
                | introduction_metadata(recipe.description, recipe.examples))
    if source is not None:
        metadata |= source_vocabulary_metadata(source, keys.DELETE_TOKEN_TEXT)
    return convert_checkpoint(checkpoint, output, outtype=outtype, force=force, metadata=metadata, report=say)
