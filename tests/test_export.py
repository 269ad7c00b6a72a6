"""The built-in model, as backspace train exported it: llama.cpp reads its tokenizer as trained, its delete token
and chat template's markers are control tokens, its recommended sampling is where backspace reads it, and it
answers and deletes as trained."""
import re
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from backspace_cli.data.evaluation import Evaluator
from backspace_cli.default_model import DEFAULT_MODEL, default_model_path
from backspace_cli.engine.chat_template import ChatTemplate
from backspace_cli.engine.engine import DeleteRules, Engine
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sequence import CacheSequence
from backspace_cli.engine.session import Session, delete_token_for, unset_sampling
from backspace_cli.settings import Settings
from backspace_cli.train.export import sampling_metadata
from backspace_convert import ConvertSpec, convert_file, keys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import twosum  # noqa: E402

MIN_GREEDY_RIGHT = 0.9  # share of held-out questions the built-in model gets right greedily
TEXTS = ["Which two of 3 8 5 1 add up to 13?", "Add 7 and 15.\n é ✓ 1421", "{a} [b] ~`|\\ 0",
         "  two  spaces ", "tab\tand emoji 🙂"]


@pytest.fixture(scope="module")
def builtin():
    assert default_model_path() == DEFAULT_MODEL, "the built-in model is missing: run make demo-model"
    return load_model(DEFAULT_MODEL, n_ctx=256, n_threads=2)


def field(reader, key):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def trained_tokenizer():
    """The byte-level BPE that backspace train trains, rebuilt with the tokenizers library from the GGUF's own
    vocabulary and merges."""
    tokenizers = pytest.importorskip("tokenizers")
    reader = gguf.GGUFReader(DEFAULT_MODEL)
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ")) for merge in field(reader, "tokenizer.ggml.merges")]
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE({text: i for i, text in enumerate(tokens)}, merges))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tokenizer


def test_the_built_in_model_is_small_and_found(builtin):
    assert DEFAULT_MODEL.stat().st_size <= 20 * 1024 * 1024
    assert builtin.metadata["general.architecture"] == "llama"


@pytest.mark.parametrize("text", TEXTS)
def test_llama_cpp_tokenizes_as_the_trained_tokenizer_and_detokenizes_the_text_exactly(builtin, trained_tokenizer,
                                                                                        text):
    ids = builtin.tokenize(text, add_bos=False, special=False)
    assert ids == trained_tokenizer.encode(text).ids
    assert b"".join(builtin.piece(token) for token in ids).decode("utf-8") == text


def test_the_delete_token_is_control_and_recorded_in_metadata(builtin):
    reader = gguf.GGUFReader(DEFAULT_MODEL)
    recorded = reader.fields[keys.DELETE_TOKEN_ID]
    assert recorded.types == [gguf.GGUFValueType.UINT32]
    delete_id = recorded.contents()
    assert field(reader, "tokenizer.ggml.tokens")[delete_id] == keys.DELETE_TOKEN_TEXT
    assert field(reader, "tokenizer.ggml.token_type")[delete_id] == gguf.TokenType.CONTROL
    assert builtin.metadata[keys.DELETE_TOKEN] == keys.DELETE_TOKEN_TEXT
    assert builtin.metadata["backspace.converter_version"]
    token = delete_token_for(builtin, None)
    assert (token.id, token.text, token.source) == (delete_id, keys.DELETE_TOKEN_TEXT, "metadata")
    assert builtin.piece(delete_id) == b""  # llama.cpp never prints it


def test_the_chat_template_marks_turns_with_control_tokens_and_writes_the_rest_as_text(builtin):
    ids = ChatTemplate(builtin).tokens([{"role": "user", "content": "1+2"}])
    start, end = builtin.find_token("<|im_start|>"), builtin.find_token("<|im_end|>")
    assert [token for token in ids if builtin.piece(token) == b""] == [start, end, start]
    assert "".join(builtin.token_text(token) for token in ids) == (
        "<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n")


def test_the_built_in_model_recommends_greedy_decoding(builtin):
    assert unset_sampling(builtin, Settings())["temp"] == 0.0


def test_a_recommended_sampling_is_written_where_backspace_reads_it(tiny_llama_without_delete_path, tmp_path):
    recommended = {"temp": 1.25, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    spec = ConvertSpec(metadata=sampling_metadata(recommended))
    path = convert_file(tiny_llama_without_delete_path, tmp_path / "sampling.gguf", spec).output
    resolved = unset_sampling(load_model(path, n_ctx=64, n_threads=1), Settings())
    assert {name: resolved[name] for name in recommended} == recommended


def test_the_built_in_model_answers_held_out_questions_greedily_with_deletes(builtin):
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
