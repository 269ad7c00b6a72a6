"""What a model says about itself is read from its own file: the built-in model's, another's, or nothing."""
from pathlib import Path

import gguf

from backspace_cli.default_model import DEFAULT_MODEL
from backspace_cli.engine.model import load_model
from backspace_cli.introduction import Introduction
from backspace_convert import ConvertSpec, convert_file, keys
from backspace_convert.plan import Value
from builtin_recipe import DESCRIPTION, EXAMPLES


def introduction_of(path: Path) -> Introduction:
    return Introduction.of(load_model(path, n_ctx=64, n_threads=1).metadata)


def test_the_built_in_model_carries_what_its_recipe_says():
    assert introduction_of(DEFAULT_MODEL) == Introduction(DESCRIPTION, EXAMPLES)


def test_a_converted_model_shows_its_own_introduction(tiny_llama_without_delete_path, tmp_path):
    text = gguf.GGUFValueType.STRING
    spec = ConvertSpec(metadata={keys.DESCRIPTION: Value("  Knows colours.\n", text),
                                 keys.EXAMPLES: Value("Is the sky blue?\n\n  What is red?  \n", text)})
    converted = convert_file(tiny_llama_without_delete_path, tmp_path / "colours.gguf", spec).output
    assert introduction_of(converted) == Introduction("Knows colours.", ("Is the sky blue?", "What is red?"))


def test_a_model_that_carries_none_says_nothing(tiny_llama_path, smollm2_path):
    assert introduction_of(tiny_llama_path) == introduction_of(smollm2_path) == Introduction("", ())
