"""Shared fixtures: tiny GGUF models built here, and the real SmolLM2-135M-Instruct fetched by make."""
from pathlib import Path

import pytest

import real_model
import tiny_models
from backspace_cli.engine.model import Model, load_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_llama_path(model_dir) -> Path:
    return tiny_models.build_llama(model_dir / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_llama_without_delete_path(model_dir) -> Path:
    return tiny_models.build_llama(model_dir / "tiny-llama-plain.gguf", delete_token=None)


@pytest.fixture(scope="session")
def tiny_gemma3_path(model_dir) -> Path:
    return tiny_models.build_gemma3(model_dir / "tiny-gemma3.gguf")


@pytest.fixture(scope="session")
def tiny_mamba_path(model_dir) -> Path:
    return tiny_models.build_mamba(model_dir / "tiny-mamba.gguf")


@pytest.fixture(scope="session")
def tiny_lfm2_path(model_dir) -> Path:
    return tiny_models.build_lfm2(model_dir / "tiny-lfm2.gguf")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    path = real_model.smollm2()
    if not path.is_file():
        pytest.fail(f"SmolLM2 test model missing at {path}: run `make models` (make test does)")
    return path


def _load(path: Path) -> Model:
    return load_model(path, n_ctx=512, n_threads=2)


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_path) -> Model:
    return _load(tiny_llama_path)


@pytest.fixture(scope="session")
def tiny_gemma3(tiny_gemma3_path) -> Model:
    return _load(tiny_gemma3_path)


@pytest.fixture(scope="session")
def tiny_mamba(tiny_mamba_path) -> Model:
    return _load(tiny_mamba_path)


@pytest.fixture(scope="session")
def tiny_lfm2(tiny_lfm2_path) -> Model:
    return _load(tiny_lfm2_path)


@pytest.fixture(scope="session")
def smollm2(smollm2_path) -> Model:
    return _load(smollm2_path)
