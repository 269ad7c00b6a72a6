"""`backspace convert`'s modes on real files and real llama.cpp: SmolLM2 append, mark, reuse, marker, padded vocabularies."""
import json
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest

import convert_models
import tiny_models
from backspace_cli.engine.logits_check import check_logits
from backspace_cli.engine.model import load_model
from backspace_convert import ConvertError, ConvertSpec, convert_file, inspect_model, open_gguf
from backspace_convert.streaming import field_spans
from backspace_convert.sink import GGUFSink

DELETE = tiny_models.DELETE


# Files are read with open_gguf: gguf-py's GGUFReader with faster reads and lazy arrays (the test below
# shows it reads SmolLM2 exactly as the stock reader does), since the stock one takes seconds per SmolLM2 parse.
def metadata(path):
    reader = open_gguf(path)
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


def tensor_bytes(path) -> dict[str, bytes]:
    return {tensor.name: tensor.data.tobytes() for tensor in open_gguf(path).tensors}


@pytest.mark.smollm2
def test_the_guarded_reader_reads_smollm2_exactly_as_gguf_py_does(smollm2_path):
    stock, guarded = gguf.GGUFReader(smollm2_path), open_gguf(smollm2_path)
    assert list(stock.fields) == list(guarded.fields)
    for name, field in stock.fields.items():
        ours = guarded.fields[name]
        assert (ours.offset, ours.types, list(ours.data)) == (field.offset, field.types, list(field.data)), name
        assert ours.contents() == field.contents() and ours.contents(len(field.data) - 1) == field.contents(len(field.data) - 1)
        # the same parts, though an array's are made only when asked for
        assert [(part.dtype, part.tobytes()) for part in ours.parts] == [(part.dtype, part.tobytes()) for part in field.parts]
    assert [(t.name, t.tensor_type, list(t.shape), t.data_offset, t.n_bytes) for t in stock.tensors] == [
        (t.name, t.tensor_type, list(t.shape), t.data_offset, t.n_bytes) for t in guarded.tensors
    ]
    assert (stock.alignment, stock.data_offset, stock.endianess) == (guarded.alignment, guarded.data_offset, guarded.endianess)


def assert_only_delete_keys_changed(source, output, changed=()):
    """Every key but the backspace.* ones and `changed` keeps its value and its type."""
    before = source if isinstance(source, gguf.GGUFReader) else open_gguf(source)
    after = output if isinstance(output, gguf.GGUFReader) else open_gguf(output)
    for name, field in before.fields.items():
        if name.startswith("GGUF.") or name in changed:
            continue
        assert after.fields[name].types == field.types, name
        assert after.fields[name].contents() == field.contents(), name
    added = set(after.fields) - set(before.fields)
    assert added <= {"backspace.delete_token_id", "backspace.delete_token", "backspace.delete_marker",
                     "backspace.converter_version", "tokenizer.ggml.token_type"}


@pytest.fixture(scope="module")
def smollm2_converted(smollm2_path, tmp_path_factory):
    output = tmp_path_factory.mktemp("smollm2") / "smollm2.backspace.gguf"
    result = convert_file(smollm2_path, output)
    return result


@pytest.mark.smollm2
def test_append_on_smollm2_adds_token_49152_and_keeps_every_original_logit(smollm2_path, smollm2_converted):
    result = smollm2_converted
    assert (result.mode, result.edit.token_id) == ("append", 49152)
    source, reader = open_gguf(smollm2_path), open_gguf(result.output)
    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert embedding.tensor_type == gguf.GGMLQuantizationType.Q8_0  # the type is kept, not widened
    assert list(embedding.shape) == [576, 49153]
    assert not any(t.name == "output.weight" for t in reader.tensors)  # tied embeddings stay tied
    field = lambda name: reader.fields[name].contents()  # noqa: E731
    assert field("backspace.delete_token_id") == 49152 and field("backspace.delete_token") == DELETE
    assert reader.fields["backspace.delete_token_id"].types == [gguf.GGUFValueType.UINT32]
    assert field("llama.vocab_size") == 49153
    assert reader.fields["tokenizer.ggml.tokens"].contents(49152) == DELETE
    assert reader.fields["tokenizer.ggml.token_type"].contents(49152) == gguf.TokenType.CONTROL
    assert_only_delete_keys_changed(
        source, reader, {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "llama.vocab_size"}
    )

    # The raw bytes of every original row are the input's; every other tensor is byte for byte the same.
    before = {t.name: t.data.tobytes() for t in source.tensors}
    after = {t.name: t.data.tobytes() for t in reader.tensors}
    assert before.keys() == after.keys()
    for name in before:
        if name == "token_embd.weight":
            assert after[name][: len(before[name])] == before[name]
            assert len(after[name]) - len(before[name]) == 576 // 32 * 34  # one Q8_0 row
        else:
            assert after[name] == before[name], name

    # The new row is the mean of the old ones, within Q8_0's rounding.
    rows = gguf.quants.dequantize(embedding.data, gguf.GGMLQuantizationType.Q8_0)
    mean = rows[:-1].astype(np.float64).mean(axis=0)
    assert np.abs(rows[-1] - mean).max() <= np.abs(mean).max() / 127 + 1e-6

    model = load_model(result.output, n_ctx=128, n_threads=1)
    try:
        assert model.n_vocab == 49153
        assert model.find_token(DELETE) == 49152
        assert model.piece(49152) == b""  # CONTROL: llama.cpp never prints it
        assert model.metadata["backspace.delete_token_id"] == "49152"
    finally:
        model.llama.close()

    prompt = convert_models.prompt_ids(smollm2_path)
    original = convert_models.logits(smollm2_path, prompt, 49152)
    converted = convert_models.logits(result.output, prompt, 49153)
    convert_models.assert_bit_identical(original, converted[:49152])


@pytest.mark.smollm2
def test_check_logits_passes_on_smollm2_and_the_input_is_unchanged(smollm2_path, smollm2_converted):
    check = check_logits(smollm2_path, smollm2_converted.output, 49152, n_threads=1)
    assert check.tokens == 49152 and check.prompt_tokens > 10
    assert not (smollm2_path.parent / (smollm2_path.name + ".partial")).exists()


def test_a_check_sees_the_written_file_before_the_rename_and_can_stop_it(tiny_llama_without_delete_path, tmp_path):
    seen = []

    def check(source, written, n_vocab):
        seen.append((source, written.is_file(), written.name != "out.gguf", n_vocab))
        return "checked"

    result = convert_file(tiny_llama_without_delete_path, tmp_path / "out.gguf", ConvertSpec(init="zero"), check=check)
    assert result.check_result == "checked"
    assert seen == [(tiny_llama_without_delete_path, True, True, 345)]  # the original tokens, not the new one

    def refuse(source, written, n_vocab):
        raise ConvertError("--check failed: 1 of 345 logits differ after decode 1")

    with pytest.raises(ConvertError, match="--check failed"):
        convert_file(tiny_llama_without_delete_path, tmp_path / "refused.gguf", ConvertSpec(init="zero"), check=refuse)
    assert [path.name for path in tmp_path.iterdir()] == ["out.gguf"]


@pytest.mark.smollm2
def test_converting_a_converted_file_is_a_no_op(smollm2_converted, tmp_path):
    result = convert_file(smollm2_converted.output, tmp_path / "again.gguf")
    assert result.mode == "none" and result.output is None
    assert "already converted" in result.edit.summary and "49152" in result.edit.summary
    assert not (tmp_path / "again.gguf").exists()
    with pytest.raises(ConvertError, match="already converted.*refusing to add a second"):
        convert_file(smollm2_converted.output, tmp_path / "again.gguf", ConvertSpec(token="<|other|>"))
    assert list(tmp_path.iterdir()) == []


def test_mark_changes_no_tensor_and_makes_the_token_control(tmp_path):
    tokens, scores, types = tiny_models.vocabulary(DELETE)
    index = tokens.index(DELETE)
    types[index] = gguf.TokenType.USER_DEFINED  # as a fine-tune that added it as a plain added token
    source = convert_models.build_plain(tmp_path / "marked.gguf", tokens, scores, types)
    result = convert_file(source, tmp_path / "out.gguf")
    assert (result.mode, result.edit.token_id) == ("mark", index)
    assert tensor_bytes(source) == tensor_bytes(result.output)
    fields = metadata(result.output)
    assert fields["tokenizer.ggml.token_type"][index] == gguf.TokenType.CONTROL
    assert fields["tokenizer.ggml.tokens"] == tokens
    assert (fields["backspace.delete_token_id"], fields["backspace.delete_token"]) == (index, DELETE)
    assert fields["backspace.converter_version"].startswith("backspace-convert ")
    assert_only_delete_keys_changed(source, result.output, {"tokenizer.ggml.token_type"})
    prompt = convert_models.prompt_ids(source)
    convert_models.assert_bit_identical(
        convert_models.logits(source, prompt, len(tokens)), convert_models.logits(result.output, prompt, len(tokens))
    )


def test_mark_keeps_every_tensor_byte_of_the_tiny_llama(tiny_llama_path, tmp_path):
    result = convert_file(tiny_llama_path, tmp_path / "out.gguf", ConvertSpec(mode="mark"))
    assert result.mode == "mark"
    assert tensor_bytes(tiny_llama_path) == tensor_bytes(result.output)
    # The tiny llama's token was CONTROL already: the token_type array is copied, not rewritten.
    before, after = open_gguf(tiny_llama_path), open_gguf(result.output)
    start, end = field_spans(before)["tokenizer.ggml.token_type"]
    start2, end2 = field_spans(after)["tokenizer.ggml.token_type"]
    assert before.data[start:end].tobytes() == after.data[start2:end2].tobytes()


def test_reuse_renames_a_reserved_token_and_keeps_every_logit(tmp_path):
    source = convert_models.build_reserved(tmp_path / "reserved.gguf")
    info = inspect_model(source)
    reserved = [c for c in info["candidates"] if c["text"].startswith("<|reserved_special_token_")]
    assert len(reserved) == 5 and reserved[0]["text"] == "<|reserved_special_token_0|>"
    result = convert_file(source, tmp_path / "out.gguf", ConvertSpec(reuse="<|reserved_special_token_0|>"))
    token = reserved[0]["id"]
    assert (result.mode, result.edit.token_id) == ("reuse", token)
    assert tensor_bytes(source) == tensor_bytes(result.output)
    fields = metadata(result.output)
    assert fields["tokenizer.ggml.tokens"][token] == DELETE
    assert fields["tokenizer.ggml.token_type"][token] == gguf.TokenType.CONTROL
    assert "<|reserved_special_token_0|>" not in fields["tokenizer.ggml.tokens"]
    n_vocab = len(fields["tokenizer.ggml.tokens"])
    model = load_model(result.output, n_ctx=64, n_threads=1)
    try:
        assert model.find_token(DELETE) == token and model.n_vocab == n_vocab
    finally:
        model.llama.close()
    prompt = convert_models.prompt_ids(source)
    convert_models.assert_bit_identical(
        convert_models.logits(source, prompt, n_vocab), convert_models.logits(result.output, prompt, n_vocab)
    )
    # The same token by id gives the same file.
    again = convert_file(source, tmp_path / "by-id.gguf", ConvertSpec(reuse=str(token)))
    assert again.output.read_bytes() == result.output.read_bytes()


def test_marker_records_the_marker_and_changes_no_vocabulary(tiny_llama_without_delete_path, tmp_path):
    result = convert_file(tiny_llama_without_delete_path, tmp_path / "out.gguf", ConvertSpec(marker="[DELETE]"))
    assert result.mode == "marker" and result.edit.token_id is None
    fields = metadata(result.output)
    assert fields["backspace.delete_marker"] == "[DELETE]"
    assert "backspace.delete_token_id" not in fields
    before = metadata(tiny_llama_without_delete_path)
    assert {k: v for k, v in fields.items() if not k.startswith("backspace.")} == before
    assert tensor_bytes(tiny_llama_without_delete_path) == tensor_bytes(result.output)
    info = inspect_model(result.output)
    assert info["delete_token"] == {"id": None, "text": "[DELETE]", "source": "marker"}
    again = convert_file(result.output, tmp_path / "again.gguf", ConvertSpec(marker="[DELETE]"))
    assert again.mode == "none" and not (tmp_path / "again.gguf").exists()


def test_qwen_padded_vocabulary_offers_its_padding_and_converts_both_ways(tmp_path):
    source = convert_models.build_qwen_padded(tmp_path / "qwen.gguf")
    info = inspect_model(source)
    pads = [c for c in info["candidates"]]
    assert pads and all(c["text"] == f"[PAD{c['id']}]" and c["type"] == "UNUSED" for c in pads)
    n_vocab = convert_models.QWEN_PADDED_VOCAB
    prompt = convert_models.prompt_ids(source)
    original = convert_models.logits(source, prompt, n_vocab)

    reused = convert_file(source, tmp_path / "reused.gguf", ConvertSpec(reuse=str(pads[0]["id"])))
    assert reused.mode == "reuse" and not reused.edit.warnings
    convert_models.assert_bit_identical(original, convert_models.logits(reused.output, prompt, n_vocab))

    appended = convert_file(source, tmp_path / "appended.gguf", ConvertSpec(init="zero"))
    assert (appended.mode, appended.edit.token_id) == ("append", n_vocab)
    fields = metadata(appended.output)
    assert fields["tokenizer.ggml.merges"] == convert_models.QWEN_MERGES
    convert_models.assert_bit_identical(original, convert_models.logits(appended.output, prompt, n_vocab + 1)[:n_vocab])
    model = load_model(appended.output, n_ctx=64, n_threads=1)
    try:
        assert model.find_token(DELETE) == n_vocab
        # A special token in text becomes the one token, not its characters.
        assert model.tokenize(f"the{DELETE}", add_bos=False, special=True)[-1] == n_vocab
    finally:
        model.llama.close()


def test_rows_from_npy_and_safetensors_are_stored_exactly(tmp_path):
    source = convert_models.build_typed(tmp_path / "f32.gguf", gguf.GGMLQuantizationType.F32)
    rng = np.random.default_rng(5)
    embedding, output = rng.standard_normal((2, convert_models.N_EMBD)).astype(np.float32)
    np.save(tmp_path / "rows.npy", np.stack([embedding, output]))
    write_safetensors(tmp_path / "rows.safetensors", {"embedding": embedding, "lm_head.weight": output})
    for rows in (tmp_path / "rows.npy", tmp_path / "rows.safetensors"):
        result = convert_file(source, tmp_path / f"{rows.suffix[1:]}.gguf", ConvertSpec(rows=rows))
        tensors = {t.name: t for t in gguf.GGUFReader(result.output).tensors}
        assert np.array_equal(tensors["token_embd.weight"].data[-1], embedding)
        assert np.array_equal(tensors["output.weight"].data[-1], output)

    quantized = convert_models.build_typed(tmp_path / "q8.gguf", gguf.GGMLQuantizationType.Q8_0, tied=True)
    np.save(tmp_path / "one.npy", embedding)
    result = convert_file(quantized, tmp_path / "q8-out.gguf", ConvertSpec(rows=tmp_path / "one.npy"))
    row = next(t for t in gguf.GGUFReader(result.output).tensors if t.name == "token_embd.weight").data[-1]
    expected = gguf.quants.quantize(embedding.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0)[0]
    assert row.tobytes() == expected.tobytes()


def write_safetensors(path, tensors: dict[str, np.ndarray]) -> None:
    header, offset, blobs = {}, 0, []
    for name, value in tensors.items():
        blob = np.ascontiguousarray(value, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs))


@pytest.mark.parametrize("qtype", [gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.IQ4_XS])
def test_init_zero_and_copy(qtype, tmp_path):
    source = convert_models.build_typed(tmp_path / "in.gguf", qtype)
    zero = convert_file(source, tmp_path / "zero.gguf", ConvertSpec(init="zero"))
    for tensor in gguf.GGUFReader(zero.output).tensors:
        if tensor.name in ("token_embd.weight", "output.weight"):
            assert not np.any(gguf.quants.dequantize(tensor.data[-1:], qtype))
    copied = convert_file(source, tmp_path / "copy.gguf", ConvertSpec(init="copy:▁water"))
    water = tiny_models.vocabulary(None)[0].index("▁water")
    for tensor in gguf.GGUFReader(copied.output).tensors:
        if tensor.name in ("token_embd.weight", "output.weight"):
            assert tensor.data[-1].tobytes() == tensor.data[water].tobytes()  # exact: no re-quantization


def test_interrupting_the_copy_leaves_nothing_behind(tmp_path):
    source = convert_models.build_typed(tmp_path / "in.gguf", gguf.GGMLQuantizationType.F16)
    out = tmp_path / "out"
    out.mkdir()

    def progress(total):
        assert total > 0

        def advance(done):
            raise KeyboardInterrupt

        return advance

    with pytest.raises(KeyboardInterrupt):
        convert_file(source, out / "model.gguf", progress=progress)
    assert list(out.iterdir()) == []


FULL_DISK = """
import resource, signal, sys
from backspace_convert import convert_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
sys.argv = ["backspace convert", sys.argv[1], "-o", sys.argv[2]]
from backspace_cli.cli.convert import convert
convert()
"""


def test_a_full_disk_gives_one_line_and_leaves_nothing_behind(tmp_path):
    source = convert_models.build_typed(tmp_path / "in.gguf", gguf.GGMLQuantizationType.F32)
    assert source.stat().st_size > 400_000
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", FULL_DISK, source, out / "model.gguf"], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.startswith("Error: cannot write") and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert list(out.iterdir()) == []


def test_output_is_readable_like_any_file(tmp_path, tiny_llama_path):
    result = convert_file(tiny_llama_path, tmp_path / "out.gguf")
    mask = os.umask(0)
    os.umask(mask)
    assert result.output.stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_structure_check_catches_a_changed_output(tiny_llama_without_delete_path, tmp_path):
    from dataclasses import replace

    from backspace_convert.verify import check_structure, layout

    result = convert_file(tiny_llama_without_delete_path, tmp_path / "out.gguf", ConvertSpec(init="zero"))
    source = layout(open_gguf(tiny_llama_without_delete_path))
    check_structure(source, result.output, result.edit)  # the real output passes

    other_row = {**result.edit.rows, "token_embd.weight": b"\1" * len(result.edit.rows["token_embd.weight"])}
    with pytest.raises(ConvertError, match="the new row of token_embd.weight is not the one planned"):
        check_structure(source, result.output, replace(result.edit, rows=other_row))

    data = bytearray(result.output.read_bytes())
    embedding = next(t for t in open_gguf(result.output).tensors if t.name == "token_embd.weight")
    data[embedding.data_offset] ^= 0xFF
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data)
    with pytest.raises(ConvertError, match="the data of token_embd.weight changed"):
        check_structure(source, broken, result.edit)

    context = open_gguf(result.output).fields["llama.context_length"]
    data = bytearray(result.output.read_bytes())
    data[int(context.offset) + len("llama.context_length") + 12] ^= 1  # the UINT32 value's first byte
    broken.write_bytes(data)
    with pytest.raises(ConvertError, match="the key llama.context_length changed"):
        check_structure(source, broken, result.edit)


V = gguf.GGUFValueType
ARRAYS = [(V.STRING, ["a", "", "Ġwörd", "<|delete|>"]), (V.INT32, [1, -2, 3]), (V.UINT8, [0, 255]), (V.INT8, [-128, 5]),
          (V.UINT16, [7, 65535]), (V.INT16, [-3, 4]), (V.UINT32, [2**32 - 1]), (V.UINT64, [2**64 - 1]), (V.INT64, [-(2**63)]),
          (V.FLOAT32, [0.1, -2.5, 1e30]), (V.FLOAT64, [0.1]), (V.BOOL, [True, False])]


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG], ids=lambda e: e.name)
@pytest.mark.parametrize("sub_type, values", ARRAYS, ids=[sub_type.name for sub_type, _ in ARRAYS])
def test_changed_arrays_are_packed_into_the_bytes_gguf_py_packs(sub_type, values, endianess, tmp_path):
    sink = GGUFSink(tmp_path / "out.gguf", "llama", endianess, 32)
    try:
        assert sink.pack_value(values, V.ARRAY, sub_type) == sink._pack_val(values, V.ARRAY, add_vtype=True, sub_type=sub_type)
        assert sink.pack_value(7, V.UINT32, None) == sink._pack_val(7, V.UINT32, add_vtype=True)
    finally:
        sink.close()
