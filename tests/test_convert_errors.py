"""Every bad input to `backspace convert`: one line on stderr, exit status 1, the input unchanged, no output."""
import hashlib
import os
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from click.testing import CliRunner

import convert_models
import tiny_models
from backspace_cli.cli.convert import convert, inspect


def digest(path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def refuse(source, *args, output=None, match: str):
    """Run convert and check the whole contract of a refusal."""
    out_dir = output.parent if output is not None else source.parent
    before_files = set(out_dir.iterdir()) if out_dir.is_dir() else set()
    before = digest(source) if source.exists() else None
    argv = [str(source), *map(str, args)]
    if output is not None:
        argv += ["-o", str(output)]
    result = CliRunner().invoke(convert, argv)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert match in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    if before is not None:
        assert digest(source) == before  # the input is never modified
    after_files = set(out_dir.iterdir()) if out_dir.is_dir() else set()
    assert after_files == before_files  # no output, no temporary file
    return result.stderr


@pytest.fixture
def plain(tmp_path, tiny_llama_without_delete_path):
    """A private copy of a valid model without a delete token, to break in various ways."""
    path = tmp_path / "model.gguf"
    path.write_bytes(tiny_llama_without_delete_path.read_bytes())
    return path


def test_missing_file(tmp_path):
    refuse(tmp_path / "nothing.gguf", match="no such file")


def test_a_directory_that_is_no_checkpoint_folder(tmp_path):
    (tmp_path / "dir.gguf").mkdir()
    refuse(tmp_path / "dir.gguf", output=tmp_path / "out.gguf",
           match="is not a Hugging Face checkpoint folder: it has no config.json")


def test_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    refuse(tmp_path / "empty.gguf", match="empty file")


def test_bad_magic(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGML" + b"\0" * 100)
    refuse(tmp_path / "model.gguf", match="not a GGUF file (bad magic b'GGML')")


@pytest.mark.parametrize("version", [1, 4, 99])
def test_unsupported_version(plain, version):
    data = bytearray(plain.read_bytes())
    data[4:8] = struct.pack("<I", version)
    plain.write_bytes(data)
    refuse(plain, match=f"unsupported GGUF version {version}")


# Cut inside the key-value data, a count can no longer fit: the message says both things it may be.
@pytest.mark.parametrize("size,message", [
    (6, "truncated GGUF header"),
    (20, "truncated GGUF header"),
    (300, "truncated or corrupt GGUF header"),
    (5000, "truncated or corrupt GGUF header"),
])
def test_truncated_header(plain, size, message):
    plain.write_bytes(plain.read_bytes()[:size])
    refuse(plain, match=message)


def test_truncated_tensor_data(plain):
    plain.write_bytes(plain.read_bytes()[:-1000])
    refuse(plain, match="truncated GGUF tensor data")


@pytest.mark.parametrize("offset,name", [(8, "tensor count"), (16, "metadata count")])
def test_absurd_counts(plain, offset, name):
    data = bytearray(plain.read_bytes())
    data[offset:offset + 8] = struct.pack("<Q", 2**62)
    plain.write_bytes(data)
    refuse(plain, match=f"truncated or corrupt GGUF header: the {name} {2**62} cannot fit")


def test_absurd_array_length(plain):
    reader = gguf.GGUFReader(plain)
    field = reader.fields["tokenizer.ggml.scores"]
    length_at = field.offset + sum(int(part.nbytes) for part in field.parts[:4])  # key len, key, type, item type
    data = bytearray(plain.read_bytes())
    data[length_at:length_at + 8] = struct.pack("<Q", 2**40)
    plain.write_bytes(data)
    refuse(plain, match=f"corrupt GGUF header: the array length at byte {length_at - 4} {2**40} cannot fit")


def test_missing_tokenizer(tmp_path):
    tokens, scores, types = tiny_models.vocabulary(None)
    path = convert_models.build_plain(tmp_path / "model.gguf", tokens, scores, types, tokenizer=False)
    refuse(path, match="has no tokenizer (tokenizer.ggml.tokens is missing)")


def test_vocabulary_and_embedding_disagree(tmp_path):
    tokens, scores, types = tiny_models.vocabulary(None)
    path = convert_models.build_plain(tmp_path / "model.gguf", tokens, scores, types, embedding_rows=len(tokens) + 4)
    refuse(path, match=f"the vocabulary has {len(tokens)} tokens but token_embd.weight is {len(tokens) + 4} x 64")


def test_token_types_and_vocabulary_disagree(tmp_path):
    tokens, scores, types = tiny_models.vocabulary(None)
    path = convert_models.build_plain(tmp_path / "model.gguf", tokens, scores, types[:-3])
    refuse(path, match=f"tokenizer.ggml.token_type has {len(tokens) - 3} entries")


def test_reuse_of_a_missing_token(plain):
    refuse(plain, "--reuse", "<unused99>", match="token '<unused99>' is not in the vocabulary")
    refuse(plain, "--reuse", "100000", match="token id 100000 is out of range")


def test_reuse_that_would_make_a_duplicate(plain):
    refuse(plain, "--reuse", "▁the", "--token", "▁is", match="'▁is' is already token")


def test_reuse_of_a_special_token(plain):
    refuse(plain, "--reuse", "2", match="special tokens")


def test_append_of_a_token_that_exists(tiny_llama_path, tmp_path):
    refuse(tiny_llama_path, "--mode", "append", output=tmp_path / "out.gguf", match="would make a duplicate")


def test_mark_of_a_token_that_does_not_exist(plain):
    refuse(plain, "--mode", "mark", match="nothing to mark")


def test_rows_with_the_wrong_length(plain, tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros(10, dtype=np.float32))
    refuse(plain, "--rows", tmp_path / "rows.npy", match="have 10 values; the model's rows have 64")


def test_rows_that_are_not_finite(plain, tmp_path):
    np.save(tmp_path / "rows.npy", np.full(64, np.nan, dtype=np.float32))
    refuse(plain, "--rows", tmp_path / "rows.npy", match="NaN")


def test_an_unknown_init(plain):
    refuse(plain, "--init", "random", match="unknown --init 'random'")


def test_init_outside_append_mode(tiny_llama_path, tmp_path):
    refuse(tiny_llama_path, "--init", "zero", output=tmp_path / "out.gguf", match="only apply to append mode")


def test_output_directory_that_does_not_exist(plain, tmp_path):
    refuse(plain, output=tmp_path / "missing" / "out.gguf", match="output directory does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere; /sys covers that case")
def test_output_directory_without_write_permission(plain, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refuse(plain, output=locked / "out.gguf", match="cannot write to the output directory")
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs a read-only /sys")
def test_output_directory_that_refuses_writes(plain):
    refuse(plain, output=Path("/sys/kernel/out.gguf"), match="cannot write to the output directory /sys/kernel")


def test_existing_output_without_force(plain, tmp_path):
    existing = tmp_path / "out.gguf"
    existing.write_bytes(b"precious")
    refuse(plain, output=existing, match="output exists")
    assert existing.read_bytes() == b"precious"
    result = CliRunner().invoke(convert, [str(plain), "-o", str(existing), "--force"])
    assert result.exit_code == 0 and existing.read_bytes()[:4] == b"GGUF"


def test_output_that_is_the_input(plain):
    refuse(plain, "--force", output=plain, match="the input is never modified")


def test_split_files_are_refused_with_the_way_out(tmp_path, tiny_llama_without_delete_path):
    shard = tmp_path / "model-00001-of-00002.gguf"
    shard.write_bytes(tiny_llama_without_delete_path.read_bytes())
    refuse(shard, match="split GGUF files are not supported: merge the shards first with `llama-gguf-split --merge")
    tokens, scores, types = tiny_models.vocabulary(None)
    split_key = {"split.count": (2, gguf.GGUFValueType.UINT16)}
    flagged = convert_models.build_plain(tmp_path / "flagged.gguf", tokens, scores, types, extra=split_key)
    refuse(flagged, match="split GGUF files are not supported")


def test_conflicting_options(plain):
    refuse(plain, "--marker", "[DELETE]", "--reuse", "5", match="cannot be combined")
    refuse(plain, "--mode", "reuse", match="reuse mode needs the token")


def test_inspect_refuses_the_same_way(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"nope")
    result = CliRunner().invoke(inspect, [str(tmp_path / "model.gguf")])
    assert result.exit_code == 1 and result.stderr.startswith("Error: not a GGUF file")


@pytest.mark.parametrize("data,message", [
    (None, "model file not found"),
    (b"", "empty file"),
    (b"GGML" + b"\0" * 100, "not a GGUF file (bad magic b'GGML')"),
    (b"GGUF" + struct.pack("<I", 99) + b"\0" * 100, "unsupported GGUF version 99"),
])
def test_the_engine_makes_the_same_file_checks(tmp_path, data, message):
    from backspace_cli.engine.model import ModelError, load_model

    path = tmp_path / "model.gguf"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(ModelError) as refused:
        load_model(path)
    assert message in str(refused.value) and str(refused.value).endswith(f": {path}")
