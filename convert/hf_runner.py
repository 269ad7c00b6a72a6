"""Runs llama.cpp's convert_hf_to_gguf.py as it is, naming GPT-2's pre-tokenizer for a self-trained byte-level BPE.

    python -m backspace_convert.hf_runner .../convert_hf_to_gguf.py MODEL_DIR --outfile OUT --outtype TYPE

The converter records which regex a byte-level BPE splits text with (`tokenizer.ggml.pre`). It finds out by
hashing how the tokenizer encodes a fixed text, among the tokenizers of published models, so a tokenizer
trained from scratch is not recognized. Only then, and only when tokenizer.json's `pre_tokenizer` is the
tokenizers library's ByteLevel with its regex and no added prefix space (`use_regex` true, `add_prefix_space`
false, as GPT-2's own), is the answer "gpt-2": llama.cpp's gpt-2 pre-tokenizer splits with that same regex.
Anything else fails as the converter does, since a wrong name would convert silently and tokenize differently.

Only the standard library is imported here: the converter's own gguf-py must be the first gguf imported.
"""
import json
import os
import runpy
import sys
from pathlib import Path

# A line the caller shows the user; the converter's own output is kept for its errors.
NOTE = "backspace: "
GPT2 = "gpt-2"


def names_gpt2(tokenizer_json: Path) -> bool:
    """True when tokenizer.json's pre-tokenizer splits text exactly as llama.cpp's gpt-2 pre-tokenizer does."""
    try:
        pre = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("pre_tokenizer")
    except (OSError, ValueError, AttributeError):
        return False
    # The tokenizers library's defaults, for a file that leaves a field out.
    return (isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) is True
            and pre.get("add_prefix_space", True) is False)


def main() -> None:
    script = Path(sys.argv[1]).resolve()
    sys.argv = [str(script), *sys.argv[2:]]
    # As running the script itself would: conversion/ beside it, and its gguf-py ahead of an installed gguf.
    sys.path[:0] = [str(script.parent)]
    if "NO_LOCAL_GGUF" not in os.environ:
        sys.path.insert(1, str(script.parent / "gguf-py"))
    from conversion.base import TextModel

    recognized = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return recognized(self, tokenizer)
        except NotImplementedError as error:
            if not names_gpt2(Path(self.dir_model) / "tokenizer.json"):
                raise NotImplementedError(f"{error}; backspace names it {GPT2!r} only for tokenizer.json's ByteLevel "
                                          "pre-tokenizer with use_regex true and add_prefix_space false") from None
        print(f"{NOTE}the BPE pre-tokenizer is not a published model's; tokenizer.json's is ByteLevel with "
              f"GPT-2's regex and no prefix space, so it is written as {GPT2!r}", file=sys.stderr, flush=True)
        return GPT2

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
