"""The real model that the tests and benchmarks run, SmolLM2-135M-Instruct Q4_1: BACKSPACE_TEST_MODEL, else
where `make models` puts it (the Makefile's SMOLLM2)."""
import os
from pathlib import Path

from backspace_convert.cache import cache_folder

SMOLLM2_FILE = "models/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside backspace's cache folder


def smollm2() -> Path:
    return Path(os.environ.get("BACKSPACE_TEST_MODEL") or cache_folder() / SMOLLM2_FILE)
