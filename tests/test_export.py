"""Our GGUF exporter and the built-in model: llama.cpp computes what PyTorch computes, and reads our vocabulary."""
import re
import sys
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest

from backspace_cli.default_model import DEFAULT_MODEL, default_model_path
from backspace_cli.engine.model import load_model
from backspace_cli.engine.session import delete_token_for

TRAINING = Path(__file__).resolve().parent.parent / "training"
sys.path.insert(0, str(TRAINING))

import twosum  # noqa: E402
import vocab  # noqa: E402

GGML_TYPE_F32 = 0
MIN_GREEDY_RIGHT = 0.5  # share of held-out questions the built-in model gets right greedily
TEXTS = ["Which two of 3 8 5 1 add up to 13?", "Add 7 and 15.\n é ✓ 1421", "{a} [b] ~`|\\ 0"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A freshly initialised TinyLlama with grouped-query attention, exported; weights made large enough
    that every layer moves the logits."""
    torch = pytest.importorskip("torch")
    import export_gguf
    from tiny_llama import Config, TinyLlama

    torch.manual_seed(0)
    config = Config(n_vocab=vocab.N_VOCAB, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96, context=64)
    model = TinyLlama(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    path = export_gguf.export_model(model, tmp_path_factory.mktemp("export") / "fresh.gguf")
    return model, path


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    # F32 keys and values: the default F16 cache would round the attention inputs.
    llm = llama_cpp.Llama(str(path), n_ctx=64, logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32,
                          flash_attn=False, n_threads=2, verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


@pytest.mark.parametrize("text", TEXTS)
def test_llama_cpp_logits_match_pytorch_at_every_position(exported, text):
    import torch

    model, path = exported
    ids = [vocab.token_id(vocab.BOS)] + expected_ids(text)
    with torch.no_grad():
        reference = model(torch.tensor([ids]))[0].numpy()
    ours = llama_logits(path, ids)
    assert np.abs(reference).max() > 1.0  # logits that vary, so the comparison means something
    assert np.abs(ours - reference).max() <= 1e-4


def test_a_wrong_rope_layout_would_be_caught(exported):
    """The same weights with RoPE rotating halves (Hugging Face's layout) give other logits."""
    import torch
    from tiny_llama import apply_rope

    model, path = exported
    ids = [vocab.token_id(vocab.BOS)] + expected_ids(TEXTS[0])

    def halves(x, cos, sin):
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)

    import tiny_llama

    tiny_llama.apply_rope = halves
    try:
        with torch.no_grad():
            wrong = model(torch.tensor([ids]))[0].numpy()
    finally:
        tiny_llama.apply_rope = apply_rope
    assert np.abs(llama_logits(path, ids) - wrong).max() > 1e-2


def test_the_recommended_sampling_is_written_where_backspace_reads_it(exported, tmp_path):
    import export_gguf

    from backspace_cli.engine.session import unset_sampling
    from backspace_cli.settings import Settings

    recommended = {"temp": 1.25, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    path = export_gguf.export_model(exported[0], tmp_path / "sampling.gguf", sampling=recommended)
    resolved = unset_sampling(load_model(path, n_ctx=64, n_threads=1), Settings())
    assert {name: resolved[name] for name in recommended} == recommended


def test_an_export_carries_the_description_and_examples_that_chat_and_the_page_show(exported):
    import export_gguf

    from backspace_cli.introduction import Introduction

    introduction = Introduction.of(load_model(exported[1], n_ctx=64, n_threads=1).metadata)
    assert introduction == Introduction(export_gguf.DESCRIPTION, export_gguf.EXAMPLES)


def expected_ids(text: str) -> list[int]:
    """Our vocabulary by hand: one token per printable character, UTF-8 bytes for the rest, and one per
    number from 10 to 29, digits read left to right."""
    ids = []
    for piece in re.findall(r"[12][0-9]|.", text, flags=re.S):
        if piece == " ":
            ids.append(vocab.token_id("▁"))
        elif piece in vocab.CHARACTERS + vocab.NUMBERS:
            ids.append(vocab.token_id(piece))
        else:
            ids += [vocab.token_id(f"<0x{byte:02X}>") for byte in piece.encode("utf-8")]
    return ids


@pytest.fixture(scope="module")
def builtin():
    assert default_model_path() == DEFAULT_MODEL, "the built-in model is missing: run make demo-model"
    return load_model(DEFAULT_MODEL, n_ctx=256, n_threads=2)


def test_the_built_in_model_is_small_and_found(builtin):
    assert DEFAULT_MODEL.stat().st_size <= 20 * 1024 * 1024
    assert builtin.metadata["general.architecture"] == "llama"


@pytest.mark.parametrize("text", TEXTS + ["  two  spaces ", "tab\tand emoji 🙂"])
def test_llama_cpp_tokenizes_and_detokenizes_the_text_exactly(builtin, text):
    ids = builtin.tokenize(text, add_bos=False, special=False)
    assert ids == expected_ids(text)
    assert b"".join(builtin.piece(token) for token in ids).decode("utf-8") == text


def test_the_delete_token_is_control_and_recorded_in_metadata(builtin):
    reader = gguf.GGUFReader(DEFAULT_MODEL)
    field = reader.fields["backspace.delete_token_id"]
    assert field.types == [gguf.GGUFValueType.UINT32]
    delete_id = int(field.parts[field.data[0]][0])
    assert delete_id == vocab.token_id(vocab.DELETE)
    types = reader.fields["tokenizer.ggml.token_type"]
    assert int(types.parts[types.data[delete_id]][0]) == gguf.TokenType.CONTROL
    assert builtin.metadata["backspace.delete_token"] == vocab.DELETE
    assert builtin.metadata["backspace.converter_version"]
    token = delete_token_for(builtin, None)
    assert (token.id, token.text, token.source) == (delete_id, vocab.DELETE, "metadata")
    assert builtin.piece(delete_id) == b""  # llama.cpp never prints it


def test_the_chat_template_writes_control_tokens(builtin):
    from backspace_cli.engine.chat_template import ChatTemplate

    ids = ChatTemplate(builtin).tokens([{"role": "user", "content": "1+2"}])
    names = [builtin.token_text(token) for token in ids]
    assert names == ["<s>", "<|user|>", "1", "+", "2", "</s>", "<|assistant|>"]


def test_the_built_in_model_answers_held_out_questions_greedily_with_deletes(builtin):
    from backspace_cli.engine.engine import DeleteRules, Engine
    from backspace_cli.data.evaluation import Evaluator
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings

    tasks = twosum.tasks(40, seed=99, evaluation=True)
    evaluator = Evaluator(Session(Settings(model=str(DEFAULT_MODEL), temp=0.0, ctx_size=256, threads=2)))
    engine = Engine(builtin)
    correct = 0
    for task in tasks:
        prompt = evaluator.prompt_tokens(task["prompt"])
        events = engine.generate(prompt, sampler=lambda logits: int(logits.argmax()), max_tokens=24,
                                 rules=DeleteRules(token_id=evaluator.delete_token.id, ban_deleted=True))
        correct += list(events)[-1].text == task["response"]
    assert correct >= MIN_GREEDY_RIGHT * len(tasks)


def test_the_built_in_model_deletes_what_cannot_be_right(builtin):
    """After a first number that is not the answer's and its complement, the delete token is far likelier
    than after the answer itself: the model writes its candidate out, then checks it."""
    import numpy as np

    from backspace_cli.data.evaluation import Evaluator
    from backspace_cli.engine.session import Session
    from backspace_cli.settings import Settings
    from backspace_cli.engine.sequence import CacheSequence

    evaluator = Evaluator(Session(Settings(model=str(DEFAULT_MODEL), ctx_size=256, threads=2)))
    delete = evaluator.delete_token.id
    sequence = CacheSequence(builtin, 512)

    def p_delete(context):
        sequence.trim(0)
        logits = sequence.feed(context).astype(np.float64)
        p = np.exp(logits - logits.max())
        return p[delete] / p.sum()

    wrong = right = 0.0
    tasks = twosum.tasks(30, seed=98, evaluation=True)
    for task in tasks:
        *numbers, target = [int(n) for n in re.findall(r"\d+", task["prompt"])]
        first = next(n for n in numbers if str(n) not in task["response"].split("+") and 0 < target - n < 30)
        prompt = evaluator.prompt_tokens(task["prompt"])
        wrong += p_delete(prompt + builtin.tokenize(f"{first}+{target - first}", add_bos=False))
        right += p_delete(prompt + builtin.tokenize(task["response"], add_bos=False))
    assert wrong > 5 * right
