"""backspace synth on real tokenizers: errors are masked, every delete follows its error, the rest is intact."""
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from backspace_cli.cli.data import synth
from backspace_cli.default_model import default_model_path
from backspace_convert.errors import UserError
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sequence import CacheSequence
from backspace_cli.engine.session import Session, delete_token_for
from backspace_cli.settings import Settings
from backspace_cli.data.synth import IGNORE, SynthOptions, Synthesizer, read_samples, synthesize

LINES = [
    '{"prompt": "What is 482+939?", "response": "1421"}',
    '{"prompt": "add 7 and 15", "response": "22", "id": "b"}',
    json.dumps({"messages": [
        {"role": "system", "content": "Add numbers."},
        {"role": "user", "content": "What is 10+20?"},
        {"role": "assistant", "content": "30"},
        {"role": "user", "content": "And 3+4?"},
        {"role": "assistant", "content": "7, of course"},
    ]}),
    "plain text, with an accent: café",
    '{"prompt": "Spell water", "response": "w-a-t-e-r (H2O)"}',
]


@pytest.fixture(scope="module")
def builtin():
    path = default_model_path()
    assert path is not None, "the built-in model is missing: run make demo-model"
    return load_model(path, n_ctx=512, n_threads=2)


def session_of(model):
    """A session on the same file: the synthesizer decodes in its own llama.cpp context."""
    return Session(Settings(model=str(model.path), ctx_size=512, threads=2))


def run(model, strategy="random", lines=LINES, **options):
    options = {"rate": 0.3, "max_errors": 3, "seed": 1, **options}
    session = session_of(model)
    synthesizer = Synthesizer(session.model, strategy, SynthOptions(**options), need_delete_id=True,
                              sequence=session.engine.sequence)
    out, tokens = io.StringIO(), io.StringIO()
    stats = synthesize(read_samples(lines), synthesizer, out, tokens)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    tokenized = [json.loads(line) for line in tokens.getvalue().splitlines()]
    return records, tokenized, stats, synthesizer


def replay(ids, labels, delete_ids):
    """Apply every delete as the engine would: each one takes back the token before it.

    Returns the surviving (id, label) pairs and the (id, label) pairs that were taken back.
    """
    kept, taken = [], []
    i = 0
    while i < len(ids):
        if ids[i : i + len(delete_ids)] == delete_ids:
            assert labels[i : i + len(delete_ids)] == delete_ids, "a delete must be learned"
            taken.append(kept.pop())
            i += len(delete_ids)
        else:
            kept.append((ids[i], labels[i]))
            i += 1
    return kept, taken


def assert_deletes_line_up(model, strategy="random", **options):
    records, tokenized, stats, synthesizer = run(model, strategy, **options)
    _, clean, _, _ = run(model, strategy, **{**options, "rate": 0.0})
    delete_ids = synthesizer.delete_ids
    wrong_total = 0
    for sample, reference in zip(tokenized, clean):
        kept, taken = replay(sample["input_ids"], sample["labels"], delete_ids)
        # Deleting every error gives back exactly the clean sample, labels included...
        assert [k[0] for k in kept] == reference["input_ids"]
        assert [k[1] for k in kept] == reference["labels"]
        # ...and what the deletes took back is exactly the errors, none of them learned.
        assert all(label == IGNORE for _, label in taken)
        assert sample["labels"].count(IGNORE) == reference["labels"].count(IGNORE) + len(taken)
        wrong_total += len(taken)
    assert wrong_total == stats.error_tokens > 0
    return records, tokenized, stats, synthesizer


def test_random_errors_are_masked_and_each_delete_follows_its_error(builtin):
    records, tokenized, stats, synthesizer = assert_deletes_line_up(builtin)
    assert stats.samples == len(LINES) and stats.errors > 0


def test_the_text_has_the_delete_token_inline_exactly_where_the_tokens_have_it(builtin):
    records, tokenized, _, synthesizer = run(builtin)
    delete = delete_token_for(builtin, None)
    for record, sample in zip(records, tokenized):
        replies = [m["content"] for m in record.get("messages", []) if m["role"] == "assistant"]
        replies = replies or [record["text"]]
        for reply in replies:
            # A character-level vocabulary: the reply's tokens are exactly a run of the sequence.
            ids = builtin.tokenize(reply, add_bos=False, special=True)
            assert _contains(sample["input_ids"], ids)
            assert reply.count(delete.text) == ids.count(delete.id)


def _contains(haystack, needle):
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_only_assistant_replies_get_errors_and_other_keys_pass_through(builtin):
    records, _, _, synthesizer = run(builtin, rate=0.5)
    source = [json.loads(line) if line.startswith("{") else None for line in LINES]
    assert records[1]["id"] == "b"
    for record, original in zip(records, source):
        if original is None:
            assert set(record) == {"text"}
            continue
        messages = original.get("messages") or [
            {"role": "user", "content": original["prompt"]}, {"role": "assistant", "content": original["response"]}
        ]
        assert [m["role"] for m in record["messages"]] == [m["role"] for m in messages]
        for got, want in zip(record["messages"], messages):
            if got["role"] != "assistant":
                assert got == want
            else:  # the reply, with every "wrong token + delete" pair removed, is the original
                assert want["content"] in _undo(got["content"], synthesizer.delete_text, _token_texts(builtin))


def _token_texts(model):
    return {text for text in (model.piece(token).decode("utf-8", "replace") for token in range(model.n_vocab)) if text}


def _undo(text, delete_text, token_texts):
    """Every text that dropping each delete and the token before it can leave: the text alone does not say
    which token a delete took back (after "22", the token "2" or the token "22")."""
    first, *rest = text.split(delete_text)
    undone = {first}
    for part in rest:
        undone = {kept[: -len(token)] + part for kept in undone for token in token_texts if kept.endswith(token)}
    return undone


def test_plain_text_lines_become_text_records_trained_on_whole(tiny_llama):
    records, tokenized, _, _ = run(tiny_llama, lines=["hello there"], rate=0.0)
    assert records == [{"text": "hello there"}]
    ids, labels = tokenized[0]["input_ids"], tokenized[0]["labels"]
    assert labels[0] == IGNORE and ids[0] == tiny_llama.llama.token_bos()  # BOS is not learned
    assert labels[1:] == ids[1:]


def test_the_prompt_is_masked_and_the_end_of_the_reply_is_learned(builtin):
    _, tokenized, _, _ = run(builtin, lines=[LINES[0]], rate=0.0)
    ids, labels = tokenized[0]["input_ids"], tokenized[0]["labels"]
    learned = [i for i, label in zip(ids, labels) if label != IGNORE]
    eos = builtin.llama.token_eos()
    assert learned == builtin.tokenize("1421", add_bos=False) + [eos]
    assert "".join(builtin.token_text(i) for i in ids) == (
        "<|im_start|>user\nWhat is 482+939?<|im_end|>\n<|im_start|>assistant\n1421<|im_end|>\n")


def test_multi_token_errors_are_k_wrong_tokens_then_k_deletes(builtin):
    records, tokenized, stats, synthesizer = assert_deletes_line_up(builtin, error_tokens=3, rate=0.4, seed=3)
    assert stats.error_tokens > stats.errors  # some errors are longer than one token
    delete = synthesizer.delete_ids[0]
    runs = []
    for sample in tokenized:
        ids, labels = sample["input_ids"], sample["labels"]
        i = 0
        while i < len(ids):
            if ids[i] != delete:
                i += 1
                continue
            deletes = 0
            while ids[i + deletes] == delete:
                deletes += 1
            # Right before k deletes stand k wrong tokens, none of them learned, after a clean token.
            assert all(label == IGNORE for label in labels[i - deletes : i])
            assert ids[i - deletes - 1] != delete
            runs.append(deletes)
            i += deletes
    assert sum(runs) == stats.error_tokens
    assert max(runs) <= 3 and any(k > 1 for k in runs)


def test_max_errors_per_sample_is_respected(builtin):
    _, tokenized, stats, synthesizer = run(builtin, rate=1.0, max_errors=2)
    delete = synthesizer.delete_ids[0]
    counts = [sample["input_ids"].count(delete) for sample in tokenized]
    assert max(counts) == 2 and stats.errors == sum(counts)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(builtin):
    first, second, third = run(builtin, seed=7), run(builtin, seed=7), run(builtin, seed=8)
    assert first[0] == second[0] and first[1] == second[1]
    assert first[0] != third[0]


def test_marker_mode_writes_the_marker_and_its_tokens(builtin):
    records, tokenized, stats, synthesizer = assert_deletes_line_up(builtin, marker="[DELETE]")
    assert synthesizer.delete_ids == builtin.tokenize("[DELETE]", add_bos=False)
    text = json.dumps(records)
    assert "[DELETE]" in text and "<|delete|>" not in text
    assert text.count("[DELETE]") == stats.error_tokens


def test_model_errors_are_plausible_alternatives_and_never_the_true_token(builtin):
    top_k = 3
    _, tokenized, _, synthesizer = assert_deletes_line_up(builtin, "model", rate=0.4, top_k=top_k)
    delete = synthesizer.delete_ids[0]
    sequence = CacheSequence(builtin, 512)
    checked = 0
    for sample in tokenized:
        ids, labels = sample["input_ids"], sample["labels"]
        taken = _taken_back(ids, delete)
        for i in range(1, len(ids)):
            if ids[i] != delete or ids[i - 1] == delete or ids[i + 1] == delete:
                continue  # a one-token error: ids[i - 1] is the mistake, ids[i + 1] the truth
            wrong, true_next = ids[i - 1], ids[i + 1]
            assert wrong != true_next
            # The strategy saw the sample's prompt as written (an earlier turn's errors included) and the
            # reply's true tokens so far: the reply starts after the last unlearned token that no delete took
            # (a text record without a BOS has none: it starts at once).
            start = 1 + max((k for k in range(i - 1) if labels[k] == IGNORE and k not in taken), default=-1)
            sequence.trim(0)
            logits = sequence.feed(ids[:start] + _without_errors(ids[start : i - 1], delete)).copy()
            # Its top_k likeliest errors among its top_k * 4 likeliest tokens; where none of those is an
            # error (it sees no plausible alternative), the strategy falls back to chance.
            rest = b"".join(synthesizer.vocabulary.pieces[t] for t in _without_errors(ids[i + 1:], delete))
            ranked = np.argsort(-logits, kind="stable")[: top_k * 4]
            likeliest_errors = [int(t) for t in ranked if synthesizer.vocabulary.is_error(int(t), rest)][:top_k]
            assert wrong in likeliest_errors or not likeliest_errors
            checked += bool(likeliest_errors)
    assert checked > 0


def _taken_back(ids, delete):
    """The positions of the tokens that a delete takes back, as the engine would apply them."""
    kept, taken = [], set()
    for position, token in enumerate(ids):
        if token == delete:
            taken.add(kept.pop())
        else:
            kept.append(position)
    return taken


def _without_errors(ids, delete):
    taken = _taken_back(ids, delete)
    return [token for position, token in enumerate(ids) if token != delete and position not in taken]


def test_reply_errors_are_other_tokens_of_the_same_reply(builtin):
    lines = ['{"prompt": "What is 482+939?", "response": "1421"}', '{"prompt": "3+4", "response": "7"}']
    _, tokenized, stats, synthesizer = assert_deletes_line_up(builtin, "reply", lines=lines, rate=0.5)
    delete = synthesizer.delete_ids[0]
    digits_of_1421 = set(builtin.tokenize("1421", add_bos=False))
    long_reply, one_digit = tokenized
    ids = long_reply["input_ids"]
    wrong = [ids[i - 1] for i in range(1, len(ids)) if ids[i] == delete]
    # Wrong digits from the reply itself; where its only digit is the truth, a random token stands in.
    assert wrong and set(wrong) <= digits_of_1421
    assert one_digit["input_ids"].count(delete) > 0


def test_a_sentencepiece_tokenizer_with_words_keeps_its_alignment(tiny_llama):
    lines = ['{"prompt": "water", "response": "the water is made of water"}', "the water is made"]
    records, tokenized, stats, synthesizer = run(tiny_llama, lines=lines, rate=0.4, error_tokens=2)
    _, clean, _, _ = run(tiny_llama, lines=lines, rate=0.0)
    for sample, reference in zip(tokenized, clean):
        kept, taken = replay(sample["input_ids"], sample["labels"], synthesizer.delete_ids)
        assert [k[0] for k in kept] == reference["input_ids"]
    assert stats.errors > 0 and stats.unaligned == 0


def test_tokenized_output_needs_a_delete_token_or_a_marker(tiny_llama_without_delete_path):
    session = Session(Settings(model=str(tiny_llama_without_delete_path), ctx_size=256, threads=2))
    with pytest.raises(UserError, match="no delete token"):
        Synthesizer(session.model, "random", SynthOptions(), need_delete_id=True)
    text_only = Synthesizer(session.model, "random", SynthOptions(rate=1.0), need_delete_id=False)
    out = io.StringIO()
    synthesize(read_samples(["the water"]), text_only, out)
    assert "<|delete|>" in out.getvalue()


def test_cli_writes_both_files_and_reports_statistics(tmp_path, builtin):
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(LINES) + "\n")
    out, tokens = tmp_path / "out.jsonl", tmp_path / "tokens.jsonl"
    result = CliRunner().invoke(synth, [str(source), "-o", str(out), "--tokenized", str(tokens), "--rate", "0.3",
                                       "--tokenizer", str(builtin.path)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == len(tokens.read_text().splitlines()) == len(LINES)
    assert "samples" in result.stderr and "errors injected" in result.stderr and "median" in result.stderr
    assert result.stdout == ""


def test_cli_model_strategy_defaults_its_tokenizer_to_that_model(tmp_path, builtin):
    source = tmp_path / "in.jsonl"
    source.write_text(LINES[0] + "\n")
    result = CliRunner().invoke(synth, [str(source), "--strategy", f"model:{builtin.path}", "--rate", "1",
                                       "--seed", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "<|delete|>" in json.loads(result.stdout)["messages"][1]["content"]


@pytest.mark.parametrize("lines, args, message", [
    ('{"prompt": 1}', [], "line 1: expected"),
    ('{"prompt": "a", "resp', [], "line 1: not valid JSON"),
    ('{"messages": [{"role": "user"}]}', [], "line 1: messages must be"),
    ("hello", ["--strategy", "guess"], "unknown strategy"),
    ("hello", ["--tokenizer", "/nonexistent.gguf"], "model file not found"),
])
def test_cli_bad_input_is_one_line_and_a_nonzero_exit(tmp_path, lines, args, message):
    source = tmp_path / "in.jsonl"
    source.write_text(lines + "\n")
    result = CliRunner().invoke(synth, [str(source), *args])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_eval_and_synth_refuse_a_broken_line_with_the_same_words():
    from backspace_cli.data.tasks import read_tasks

    lines = ["", "  \n", '{"prompt": "a", "resp']
    with pytest.raises(UserError) as by_eval:
        read_tasks(lines)
    with pytest.raises(UserError) as by_synth:
        list(read_samples(lines))
    assert str(by_eval.value) == str(by_synth.value) == "line 3: not valid JSON (Unterminated string starting at)"


def test_cli_tokenized_without_a_tokenizer_is_refused_in_one_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(LINES[0] + "\n")
    tokens = tmp_path / "tokens.jsonl"
    result = CliRunner().invoke(synth, [str(source), "--tokenized", str(tokens), "-q"])
    assert result.exit_code == 1
    assert "--tokenized writes token ids" in result.output and "--tokenizer" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not tokens.exists()
