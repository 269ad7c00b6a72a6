"""backspace_convert: puts the delete token into GGUF models (installed from convert/).

    from backspace_convert import ConvertSpec, convert_file, inspect_model
    result = convert_file("model.gguf", spec=ConvertSpec(init="zero"))

The modules, each with one job: reader (guarded GGUFReader), vocab (tokenizer facts), plan (the
mode and the Edit), rows and quantize (new rows in any tensor type), sink and streaming (the streaming
copy), atomic (every output file: its checks and its write), verify (the structure check), convert
(the whole command as a function), inspection (`backspace inspect`), progress (the rich bar), keys
(the file-format contract: metadata keys, delete-token names and the delete-token lookup), defaults
(the converter's own); hf_checkpoint (a Hugging Face checkpoint folder to a backspace GGUF in one step),
with llama_sdist (llama.cpp's converter from the pinned sdist) and hf_runner (which runs it); cache
(backspace's cache folder, where fetched and built things are kept).
"""
import importlib

# Where each public name lives. They load on first use, so that `import backspace_convert.keys` (all
# the CLI needs to build its options) does not pull in gguf and numpy.
_EXPORTS = {
    "Result": "convert",
    "convert_file": "convert",
    "convert_checkpoint": "hf_checkpoint",
    "default_output": "convert",
    "inspect_model": "inspection",
    "CONVERTER_VERSION": "keys",
    "DELETE_MARKER": "keys",
    "DELETE_TOKEN": "keys",
    "DELETE_TOKEN_ID": "keys",
    "MODES": "keys",
    "ConvertSpec": "plan",
    "Edit": "plan",
    "ConvertError": "reader",
    "open_gguf": "reader",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backspace_convert' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
