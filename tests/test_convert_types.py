"""Append mode in every tensor type real GGUF files use: old rows byte for byte, a right new row, same logits."""
import gguf
import numpy as np
import pytest

import convert_models
from backspace_convert import ConvertSpec, convert_file, open_gguf
from backspace_convert.quantize import decode_rows, encode_row

LITTLE = gguf.GGUFEndian.LITTLE

Q = gguf.GGMLQuantizationType
# The largest error a new row may have, relative to the largest value in it, per bits of precision.
TOLERANCE = {Q.F32: 1e-7, Q.F16: 1e-3, Q.BF16: 1e-2, Q.Q8_0: 0.02, Q.Q6_K: 0.05, Q.Q5_0: 0.1, Q.Q5_1: 0.1,
             Q.Q5_K: 0.1, Q.Q4_0: 0.2, Q.Q4_1: 0.2, Q.Q4_K: 0.2, Q.IQ4_NL: 0.2, Q.IQ4_XS: 0.2, Q.MXFP4: 0.3}
COARSE = 1.0  # 1- to 3-bit types: the row must still point the right way (checked by correlation)


@pytest.mark.parametrize("qtype", convert_models.TYPES, ids=lambda q: q.name)
def test_append_in_every_tensor_type(qtype, tmp_path):
    source = convert_models.build_typed(tmp_path / "in.gguf", qtype)
    result = convert_file(source, tmp_path / "out.gguf")
    assert result.mode == "append"
    before, after = open_gguf(source), open_gguf(result.output)
    n_vocab = len(before.fields["tokenizer.ggml.tokens"].data)
    assert result.edit.token_id == n_vocab
    for old, new in zip(before.tensors, after.tensors):
        assert (old.name, old.tensor_type) == (new.name, new.tensor_type)
        old_bytes, new_bytes = old.data.tobytes(), new.data.tobytes()
        if old.name in ("token_embd.weight", "output.weight"):
            assert list(new.shape) == [old.shape[0], old.shape[1] + 1]
            assert new_bytes[: len(old_bytes)] == old_bytes  # every existing row untouched
            rows = decode(new.data, qtype)
            mean = rows[:-1].astype(np.float64).mean(axis=0)
            assert_close(rows[-1], mean, qtype)
        else:
            assert new_bytes == old_bytes

    prompt = convert_models.prompt_ids(source)
    original = convert_models.logits(source, prompt, n_vocab)
    converted = convert_models.logits(result.output, prompt, n_vocab + 1)
    convert_models.assert_bit_identical(original, converted[:n_vocab])


@pytest.mark.parametrize("qtype", [Q.Q8_0, Q.Q4_K, Q.IQ3_S], ids=lambda q: q.name)
def test_tied_embeddings_grow_only_token_embd(qtype, tmp_path):
    source = convert_models.build_typed(tmp_path / "tied.gguf", qtype, tied=True)
    result = convert_file(source, tmp_path / "out.gguf", ConvertSpec(init="copy:▁the"))
    names = [tensor.name for tensor in open_gguf(result.output).tensors]
    assert "output.weight" not in names and list(result.edit.rows) == ["token_embd.weight"]
    n_vocab = result.edit.token_id
    prompt = convert_models.prompt_ids(source)
    convert_models.assert_bit_identical(
        convert_models.logits(source, prompt, n_vocab), convert_models.logits(result.output, prompt, n_vocab + 1)[:n_vocab]
    )


@pytest.mark.parametrize("qtype", convert_models.TYPES, ids=lambda q: q.name)
def test_rows_decode_through_ggml_exactly_as_gguf_py_decodes_them(qtype):
    values = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)
    raw = np.frombuffer(b"".join(encode_row(row, qtype, LITTLE) for row in values), dtype=np.uint8).reshape(3, -1)
    expected = decode(raw.view(np.uint8), qtype).reshape(3, 256).astype(np.float32)
    assert np.array_equal(decode_rows(raw, qtype, 256, LITTLE).view(np.uint32), expected.view(np.uint32))


def decode(data: np.ndarray, qtype: Q) -> np.ndarray:
    if qtype in (Q.F32, Q.F16):
        return data.view(np.float32 if qtype == Q.F32 else np.float16).astype(np.float32)
    return gguf.quants.dequantize(data, qtype)


def assert_close(row: np.ndarray, mean: np.ndarray, qtype: Q) -> None:
    tolerance = TOLERANCE.get(qtype)
    if tolerance is not None:
        assert np.abs(row - mean).max() <= tolerance * np.abs(mean).max() + 1e-7
    else:  # ternary and 1-3 bit types keep little of a row, but it must still point the same way
        assert np.corrcoef(row, mean)[0, 1] > 0.5
