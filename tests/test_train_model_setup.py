"""The trainer sees a model as the engine does: a GGUF loaded through transformers gives the engine's prompt and
answer tokens and its delete token."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from backspace_cli.engine.model import load_model  # noqa: E402
from backspace_cli.engine.prompt import prompt_tokens  # noqa: E402
from backspace_cli.train.model_setup import load_bundle  # noqa: E402
from backspace_cli.train.tasks import TrainTask  # noqa: E402

import tiny_models  # noqa: E402

QUESTIONS = ["the water is", "What is 12+7?", "  two  spaces\tand tabs\n"]


@pytest.fixture(scope="module")
def gguf_bundle(tiny_llama_path):
    return load_bundle(str(tiny_llama_path), None, None, [], seed=0)


def test_a_gguf_loads_through_transformers_with_the_engines_delete_token(gguf_bundle, tiny_llama):
    assert type(gguf_bundle.model).__name__ == "LlamaForCausalLM"
    assert gguf_bundle.delete_id == tiny_llama.find_token(tiny_models.DELETE)
    assert gguf_bundle.tokenizer.chat_template


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_trainers_prompt_and_answer_tokens_are_the_engines(gguf_bundle, tiny_llama_path, question):
    """The answer's tokens are those the engine gives it after the prompt, in a chat that holds it."""
    engine_model = load_model(tiny_llama_path, n_ctx=256)
    task = TrainTask((("user", question),), ("the water is",))
    prompt = prompt_tokens(engine_model, task.chat())
    assert gguf_bundle.prompt_ids(task) == prompt
    chat = prompt_tokens(engine_model, task.chat() + [{"role": "assistant", "content": task.answers[0]}])
    answer = gguf_bundle.answer_ids(task, task.answers[0])
    assert chat[: len(prompt) + len(answer) + 1] == prompt + answer + [gguf_bundle.reply_end]
