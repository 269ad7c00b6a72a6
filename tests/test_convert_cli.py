"""`backspace convert` and `backspace inspect` through click's runner, and through the installed command."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import convert_models
from backspace_cli.cli.convert import convert, inspect
from backspace_cli.engine.model import load_model
from backspace_cli.engine.session import delete_token_for
from backspace_convert import ConvertSpec, convert_file, inspect_model, keys, open_gguf
from backspace_convert.errors import UserError
from backspace_convert.streaming import field_spans


def test_convert_says_which_mode_it_used_and_writes_the_default_name(tiny_llama_without_delete_path, tmp_path):
    source = tmp_path / "plain.gguf"
    shutil.copyfile(tiny_llama_without_delete_path, source)
    result = CliRunner().invoke(convert, [str(source), "--init", "zero", "--check"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "mode: append"
    assert "appended '<|delete|>' as token 345" in lines[1]
    assert lines[2].startswith(f"wrote {tmp_path / 'plain.backspace.gguf'} (")
    assert lines[3] == "--check: logits bit-identical for all 345 original tokens"
    # No progress bar (stderr is not a terminal); the one warning: the new rows are not trained.
    assert result.stderr == (
        "warning: the new token's rows are not trained (--init zero): the model will not delete until it is trained "
        "with them; give the fine-tune's trained rows with --rows FILE\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.backspace.gguf", "plain.gguf"]

    again = CliRunner().invoke(convert, [str(tmp_path / "plain.backspace.gguf")])
    assert again.exit_code == 0
    assert again.stdout.startswith("already converted: the model has the delete token '<|delete|>' (id 345)")


def test_inspect_table_and_json(tmp_path):
    source = convert_models.build_reserved(tmp_path / "reserved.gguf")
    table = CliRunner().invoke(inspect, [str(source)])
    assert table.exit_code == 0
    for text in ("architecture", "llama", "vocabulary", "353 tokens", "F32 x", "absent", "reusable tokens",
                 "<|reserved_special_token_0|>", "none: `backspace convert` adds one"):
        assert text in table.stdout, text

    before = json.loads(CliRunner().invoke(inspect, [str(source), "--json"]).stdout)
    assert before["delete_token"] is None
    assert before["architecture"] == "llama" and before["vocab_size"] == 353
    assert before["chat_template"] == {"present": False, "name": None}
    assert [c["text"] for c in before["candidates"]] == [f"<|reserved_special_token_{i}|>" for i in range(5)]

    CliRunner().invoke(convert, [str(source), "--reuse", "<|reserved_special_token_3|>"])
    after = json.loads(CliRunner().invoke(inspect, [str(tmp_path / "reserved.backspace.gguf"), "--json"]).stdout)
    token = before["candidates"][3]["id"]
    assert after["delete_token"] == {"id": token, "text": "<|delete|>", "source": "metadata"}
    assert after["delete_token_type"] == "CONTROL"
    assert after["converter_version"].startswith("backspace-convert")


def test_inspect_finds_a_delete_token_by_name_and_guesses_the_template(tiny_llama_path):
    info = json.loads(CliRunner().invoke(inspect, [str(tiny_llama_path), "--json"]).stdout)
    assert info["delete_token"] == {"id": 3, "text": "<|delete|>", "source": "name"}
    assert info["chat_template"]["present"] is True and info["parameters"] > 0
    assert info["tensor_types"] == {"F32": 21}


def test_warnings_go_to_stderr(tmp_path, tiny_llama_without_delete_path):
    result = CliRunner().invoke(convert, [str(tiny_llama_without_delete_path), "--reuse", "▁water",
                                          "-o", str(tmp_path / "out.gguf")])
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: token") and "not a reserved or unused token" in result.stderr


def test_the_help_imports_nothing_heavy():
    code = ("import sys; import backspace_cli.cli.convert; "
            "print(sorted(m for m in ('gguf', 'numpy', 'llama_cpp') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_the_backspace_command_converts_and_inspects(tiny_llama_without_delete_path, tmp_path):
    command = os.path.join(os.path.dirname(sys.executable), "backspace")
    output = tmp_path / "out.gguf"
    run = subprocess.run([command, "convert", str(tiny_llama_without_delete_path), "-o", str(output)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("mode: append")
    run = subprocess.run([command, "inspect", str(output), "--json"], capture_output=True, text=True)
    assert json.loads(run.stdout)["delete_token"]["source"] == "metadata"
    run = subprocess.run([command, "convert", str(tmp_path / "missing.gguf")], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr == f"Error: no such file: {tmp_path / 'missing.gguf'}\n"


def test_inspect_and_the_engine_find_the_same_delete_token(tiny_llama_path, tiny_llama_without_delete_path, tmp_path):
    def engine_finds(path):
        model = load_model(path, n_ctx=64, n_threads=1)
        try:
            return delete_token_for(model, None)
        finally:
            model.llama.close()

    appended = convert_file(tiny_llama_without_delete_path, tmp_path / "appended.gguf", ConvertSpec(init="zero")).output
    marker = convert_file(tiny_llama_without_delete_path, tmp_path / "marker.gguf", ConvertSpec(marker="[DELETE]")).output
    for path, source in ((tiny_llama_path, "name"), (appended, "metadata"), (marker, "marker")):
        found = engine_finds(path)
        assert found.source == source
        assert inspect_model(path)["delete_token"] == {"id": found.id, "text": found.text, "source": found.source}

    # A recorded id outside the vocabulary: both refuse the file with the same line.
    data = bytearray(appended.read_bytes())
    _, end = field_spans(open_gguf(appended))[keys.DELETE_TOKEN_ID]
    data[end - 4 : end] = (9999).to_bytes(4, "little")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data)
    line = f"{keys.DELETE_TOKEN_ID} is 9999, outside the vocabulary of 346"
    refused = CliRunner().invoke(inspect, [str(broken)])
    assert refused.exit_code == 1 and refused.stderr == f"Error: {line}\n"
    with pytest.raises(UserError, match=line):
        engine_finds(broken)


def test_convert_into_a_fifo_writes_its_status_to_stderr_without_a_size(tiny_llama_without_delete_path, tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = CliRunner().invoke(convert, [str(tiny_llama_without_delete_path), "-o", str(fifo), "--init", "zero"])
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the FIFO could be stdout: nothing else goes there
    assert "mode: append" in result.stderr
    assert f"wrote {fifo} (structure checked)" in result.stderr
    assert received and received[0][:4] == b"GGUF"


def test_an_hf_checkpoint_is_refused_with_the_command_that_converts_it_by_convert_and_by_every_model_option(tmp_path):
    from backspace_cli.cli.main import main

    checkpoint = tmp_path / "my-finetune"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    line = (f"Error: {{}} looks like a Hugging Face checkpoint (config.json, *.safetensors), not a GGUF file: make one "
            f"with `backspace convert {checkpoint}` (docs/convert.md)\n")
    for args, given in ((["convert", str(checkpoint / "model.safetensors")], checkpoint / "model.safetensors"),
                        (["inspect", str(checkpoint / "model.safetensors")], checkpoint / "model.safetensors"),
                        (["complete", "-m", str(checkpoint), "hi"], checkpoint),
                        (["chat", "-m", str(checkpoint), "hi"], checkpoint)):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and result.stderr == line.format(given), args
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "config.json").write_text("{}")  # a config alone says so too
    assert "looks like a Hugging Face checkpoint" in CliRunner().invoke(inspect, [str(checkpoint)]).stderr


def test_appending_beside_reserved_tokens_names_them_and_suggests_reuse(tmp_path):
    source = convert_models.build_reserved(tmp_path / "reserved.gguf")
    first = convert_models.RESERVED[0]
    result = CliRunner().invoke(convert, [str(source), "--init", "zero"])
    assert result.exit_code == 0 and result.stdout.startswith("mode: append")
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: the new token's rows are not trained (--init zero)")
    ids = [open_gguf(source).fields["tokenizer.ggml.tokens"].contents().index(t) for t in convert_models.RESERVED[:3]]
    named = ", ".join(f"{text!r} (id {i})" for text, i in zip(convert_models.RESERVED, ids))
    assert warnings[1] == (f"warning: appended a new token, but the vocabulary has reserved or unused tokens: {named}, ...; "
                           "if the fine-tune trained one of them to delete, convert with --reuse TOKEN instead "
                           "(backspace inspect lists them)")

    # Asked for by name, append says nothing of the reserved tokens; reuse says nothing at all.
    asked = CliRunner().invoke(convert, [str(source), "--mode", "append", "--init", "zero", "-o", str(tmp_path / "a.gguf")])
    assert asked.exit_code == 0 and asked.stderr.count("warning:") == 1 and "--reuse" not in asked.stderr
    reused = CliRunner().invoke(convert, [str(source), "--reuse", first, "-o", str(tmp_path / "r.gguf")])
    assert reused.exit_code == 0 and reused.stderr == ""


def test_trained_rows_leave_nothing_to_warn_about(tiny_llama_without_delete_path, tmp_path):
    import numpy as np

    embedding = next(t for t in open_gguf(tiny_llama_without_delete_path).tensors if t.name == "token_embd.weight")
    n_embd = int(embedding.shape[0])
    np.save(tmp_path / "rows.npy", np.full((2, n_embd), 0.01, dtype=np.float32))
    result = CliRunner().invoke(convert, [str(tiny_llama_without_delete_path), "--rows", str(tmp_path / "rows.npy"),
                                          "-o", str(tmp_path / "out.gguf")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("mode: append") and result.stderr == ""
