"""synth with an HF tokenizer (tokenizers' own, trained here): the same ids as llama.cpp gives once converted."""
import io
import json

import gguf
import pytest

import tiny_models
from backspace_cli.data.hf_tokenizer import HFTokenizer
from backspace_cli.data.synth import SynthOptions, Synthesizer, read_samples, synthesize
from backspace_cli.engine.model import load_model

tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|delete|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["What is 482+939? It is 1421.", "The quick brown fox jumps over the lazy dog.", "héllo wörld, ça va? 日本語",
          "def add(a, b):\n    return a + b\n"] * 20
TEXTS = ["What is 12+30? 42", "  two  spaces and\ttabs\n", "ünïcödé 日本 and <|im_end|> inline", "fox dog 1421"]
LINES = [json.dumps({"prompt": "What is 482+939?", "response": "It is 1421."}),
         json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "fox?"},
                                  {"role": "assistant", "content": "The quick brown fox."}]}),
         "a plain text line about the lazy dog"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A byte-level BPE (GPT-2's pre-tokenizer) with <|delete|> among its special tokens, saved as
    save_pretrained saves one: tokenizer.json and tokenizer_config.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS, trainer)
    folder = tmp_path_factory.mktemp("hf") / "tokenizer"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": CHATML}))
    return folder


@pytest.fixture(scope="module")
def converted(hf_folder, tmp_path_factory):
    """The same tokenizer as convert_hf_to_gguf.py writes a GPT-2-style one, in a tiny Llama."""
    data = json.loads((hf_folder / "tokenizer.json").read_text())
    vocab = {**data["model"]["vocab"], **{t["content"]: t["id"] for t in data["added_tokens"]}}
    tokens = [text for text, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]

    def write(writer: gguf.GGUFWriter) -> int:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
        writer.add_token_merges(merges)
        writer.add_eos_token_id(vocab["<|im_end|>"])
        writer.add_add_bos_token(False)
        writer.add_chat_template(CHATML)
        return len(tokens)

    path = tiny_models.build_llama(tmp_path_factory.mktemp("gguf") / "bpe.gguf", tokenizer=write)
    return load_model(path, n_ctx=256)


@pytest.mark.parametrize("special", [True, False])
def test_the_ids_match_llama_cpps_for_the_same_tokenizer(hf_folder, converted, special):
    hf = HFTokenizer(str(hf_folder))
    for text in TEXTS:
        assert hf.tokenize(text, add_bos=False, special=special) == converted.tokenize(text, add_bos=False,
                                                                                     special=special), text
    for token in range(converted.n_vocab):
        assert hf.piece(token) == converted.piece(token), token


def test_synth_writes_the_same_samples_from_the_folder_as_from_the_converted_gguf(hf_folder, converted):
    outputs = []
    for tokenizer in (HFTokenizer(str(hf_folder)), HFTokenizer(str(hf_folder / "tokenizer.json")), converted):
        out, tokens = io.StringIO(), io.StringIO()
        synthesizer = Synthesizer(tokenizer, "reply", SynthOptions(rate=0.3, seed=4), need_delete_id=True)
        stats = synthesize(read_samples(LINES), synthesizer, out, tokens)
        outputs.append((out.getvalue(), tokens.getvalue()))
        assert stats.errors > 0 and stats.unaligned == 0
    assert outputs[0] == outputs[1] == outputs[2]
    delete = HFTokenizer(str(hf_folder)).find_token("<|delete|>")
    assert any(delete in json.loads(line)["input_ids"] for line in outputs[0][1].splitlines())


def test_cli_takes_a_save_pretrained_folder_as_the_tokenizer(hf_folder, tmp_path):
    from click.testing import CliRunner

    from backspace_cli.cli.data import synth

    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(LINES) + "\n")
    tokens = tmp_path / "tokens.jsonl"
    result = CliRunner().invoke(synth, [str(source), "-o", str(tmp_path / "out.jsonl"), "--tokenized", str(tokens),
                                       "--tokenizer", str(hf_folder), "--rate", "0.3", "-q"])
    assert result.exit_code == 0, result.output
    samples = [json.loads(line) for line in tokens.read_text().splitlines()]
    assert len(samples) == 3 and all(len(s["input_ids"]) == len(s["labels"]) for s in samples)


def test_an_hf_tokenizer_without_the_delete_token_is_refused_for_either_output(hf_folder, tmp_path):
    """Its model would read a written <|delete|> as plain text, so no data is made for it."""
    from click.testing import CliRunner

    from backspace_cli.cli.data import synth

    data = json.loads((hf_folder / "tokenizer.json").read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|delete|>"]
    data["model"]["vocab"].pop("<|delete|>", None)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "tokenizer.json").write_text(json.dumps(data))
    (plain / "tokenizer_config.json").write_text((hf_folder / "tokenizer_config.json").read_text())
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(LINES) + "\n")
    result = CliRunner().invoke(synth, [str(source), "-o", str(tmp_path / "out.jsonl"), "--tokenizer", str(plain)])
    assert result.exit_code == 1
    assert "has no delete token, so a delete would be plain text to the model" in result.output
    assert not (tmp_path / "out.jsonl").exists()
