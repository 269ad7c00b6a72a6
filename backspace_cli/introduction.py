"""What a model says about itself, from its own GGUF: a description and example questions, or nothing."""
from collections.abc import Mapping
from dataclasses import dataclass

from backspace_convert import keys


@dataclass(frozen=True)
class Introduction:
    description: str  # empty: the model says nothing about itself
    examples: tuple[str, ...]  # questions it answers well

    @classmethod
    def of(cls, metadata: Mapping[str, str]) -> "Introduction":
        """Read from a model's metadata (llama.cpp's, as strings)."""
        examples = metadata.get(keys.EXAMPLES, "").splitlines()
        return cls(metadata.get(keys.DESCRIPTION, "").strip(), tuple(line.strip() for line in examples if line.strip()))
