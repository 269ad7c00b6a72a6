"""`backspace convert DIR`: a Hugging Face checkpoint folder becomes a backspace GGUF in one step, through the pinned
sdist's convert_hf_to_gguf.py (a self-trained byte-level BPE included), then mark mode; and what it refuses.

The conversions need BACKSPACE_LLAMA_SDIST (`make test` sets it) and the test extra's torch and transformers."""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backspace_convert import defaults, hf_checkpoint, llama_sdist, open_gguf
from backspace_convert.errors import UserError
from backspace_convert.hf_checkpoint import convert_checkpoint
from backspace_convert.hf_runner import names_gpt2
from backspace_convert.keys import DELETE_TOKEN_ID
from hf_checkpoints import DELETE, SDIST_ENV, SDIST_MISSING, SPECIALS, converter_env, make_model
import real_model

converts = pytest.mark.skipif(
    not os.environ.get(SDIST_ENV) or importlib.util.find_spec("transformers") is None,
    reason=SDIST_MISSING if not os.environ.get(SDIST_ENV) else "needs the test extra (torch, transformers)",
)
ONE_LINE_ERROR = re.compile(r"Error: [^\n]+\n")


def backspace(*args, env: dict, **kwargs) -> subprocess.CompletedProcess:
    command = os.path.join(os.path.dirname(sys.executable), "backspace")
    return subprocess.run([command, *map(str, args)], capture_output=True, text=True, timeout=300, env=env, **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A save_pretrained folder: a byte-level BPE trained here, with <|delete|> special, and a random tiny Llama."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("needs the test extra (torch, transformers)")
    folder = tmp_path_factory.mktemp("saved") / "my-model"
    make_model(folder)
    return folder


@pytest.fixture
def checkpoint(saved, tmp_path) -> Path:
    """The saved folder, copied alone into this test's folder."""
    return Path(shutil.copytree(saved, tmp_path / saved.name))


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def leftovers(folder: Path, *inputs: Path) -> list[str]:
    """What a run left beside its inputs, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir() if p not in inputs)


def tensor_type(path: Path, name: str) -> str:
    return next(t.tensor_type.name for t in open_gguf(path).tensors if t.name == name)


@converts
def test_a_checkpoint_folder_converts_in_one_step_to_a_model_that_chats(checkpoint, tmp_path):
    env = converter_env(tmp_path)
    before = digests(checkpoint)
    run = backspace("convert", checkpoint, "-o", tmp_path / "out.gguf", env=env)
    assert run.returncode == 0, run.stderr
    delete_id = SPECIALS.index(DELETE)
    assert run.stderr.splitlines()[-4:] == [
        f"converting {checkpoint} with llama.cpp's convert_hf_to_gguf.py (--outtype auto)",
        # The tokenizer trained here is no published model's: it is named GPT-2's, from its tokenizer.json.
        "the BPE pre-tokenizer is not a published model's; tokenizer.json's is ByteLevel with GPT-2's regex and no "
        "prefix space, so it is written as 'gpt-2'",
        "marking the delete token",
        f"marked the existing token '{DELETE}' (id {delete_id}, was CONTROL) as the delete token",
    ]
    assert re.fullmatch(rf"wrote {re.escape(str(tmp_path / 'out.gguf'))} \([\d.,]+ MB, structure checked\)\n",
                        run.stdout)
    assert digests(checkpoint) == before  # the input is never modified

    run = backspace("inspect", tmp_path / "out.gguf", "--json", env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["delete_token"]["id"] == delete_id
    assert tensor_type(tmp_path / "out.gguf", "token_embd.weight") == "F16"  # auto, for weights saved as f32

    run = backspace("chat", "-m", tmp_path / "out.gguf", "hi", "-n", "4", "--format", "jsonl", env=env)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["prompt_tokens"] > 0
    assert "no delete token" not in run.stderr
    assert leftovers(tmp_path, checkpoint, tmp_path / "out.gguf", tmp_path / "hf-cache") == []


@converts
def test_the_library_function_writes_beside_the_folder_in_the_type_asked_for_and_replaces_with_force(
        checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    default = tmp_path / "my-model.backspace.gguf"
    default.write_bytes(b"an older conversion")
    with pytest.raises(UserError, match=re.escape(f"output exists: {default} (use --force to replace it)")):
        convert_checkpoint(checkpoint, outtype="f32")
    assert default.read_bytes() == b"an older conversion"

    steps = []
    written = convert_checkpoint(checkpoint, outtype="f32", force=True, report=steps.append)
    assert written == default
    assert tensor_type(written, "token_embd.weight") == "F32"
    assert open_gguf(written).fields[DELETE_TOKEN_ID].contents() == SPECIALS.index(DELETE)
    assert steps[0] == f"converting {checkpoint} with llama.cpp's convert_hf_to_gguf.py (--outtype f32)"
    assert steps[-2:] == ["marking the delete token",
                          f"marked the existing token '{DELETE}' (id {SPECIALS.index(DELETE)}, was CONTROL) "
                          "as the delete token"]


@converts
def test_an_existing_output_is_refused_before_any_conversion(checkpoint, tmp_path):
    output = tmp_path / "out.gguf"
    output.write_bytes(b"keep me")
    run = backspace("convert", checkpoint, "-o", output, env=converter_env(tmp_path))
    assert run.returncode == 1
    assert run.stderr == f"Error: output exists: {output} (use --force to replace it)\n"
    assert output.read_bytes() == b"keep me"


@converts
def test_a_kill_during_the_conversion_leaves_nothing_and_stops_the_converter(checkpoint, tmp_path):
    command = [os.path.join(os.path.dirname(sys.executable), "backspace"), "convert", str(checkpoint),
               "-o", str(tmp_path / "out.gguf")]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=converter_env(tmp_path))
    while not (converter := processes_running("backspace_convert.hf_runner", str(checkpoint))):
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)  # the converter starts after the checks and the sdist's extraction
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert process.stderr.read().endswith("interrupted: nothing was written\n")
    assert leftovers(tmp_path, checkpoint) == []
    assert processes_running("backspace_convert.hf_runner", str(checkpoint)) == []
    assert converter  # what it was


def processes_running(*words: str) -> list[Path]:
    """The processes whose command line holds every word."""
    found = []
    for process in Path("/proc").glob("[0-9]*"):
        try:
            line = (process / "cmdline").read_bytes().decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        if all(word in line for word in words):
            found.append(process)
    return found


@converts
def test_a_converter_failure_is_its_last_error_line(checkpoint, tmp_path):
    env = converter_env(tmp_path)
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchModelForCausalLM"]}))
    run = backspace("convert", checkpoint, "-o", tmp_path / "out.gguf", env=env)
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == (f"Error: convert_hf_to_gguf.py could not convert {checkpoint}: "
                                           "Model NoSuchModelForCausalLM is not supported")
    (checkpoint / "config.json").write_text(json.dumps(config))

    (checkpoint / "model.safetensors").write_bytes(b"not safetensors")
    run = backspace("convert", checkpoint, "-o", tmp_path / "out.gguf", env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    # The traceback's last line: the exception that stopped the converter.
    assert run.stderr.splitlines()[-1].startswith(
        f"Error: convert_hf_to_gguf.py could not convert {checkpoint}: ValueError: Could not read complete metadata")
    assert leftovers(tmp_path, checkpoint, tmp_path / "hf-cache") == []


@converts
def test_a_byte_level_bpe_that_adds_a_prefix_space_is_not_taken_for_gpt2(tmp_path):
    folder = tmp_path / "prefixed"
    make_model(folder, add_prefix_space=True)
    run = backspace("convert", folder, "-o", tmp_path / "out.gguf", env=converter_env(tmp_path))
    assert run.returncode == 1 and "gpt-2" not in run.stderr.splitlines()[-2]
    assert run.stderr.splitlines()[-1] == (
        f"Error: convert_hf_to_gguf.py could not convert {folder}: NotImplementedError: BPE pre-tokenizer was not "
        "recognized - update get_vocab_base_pre(); backspace names it 'gpt-2' only for tokenizer.json's ByteLevel "
        "pre-tokenizer with use_regex true and add_prefix_space false")
    assert not (tmp_path / "out.gguf").exists()


def test_a_folder_without_config_json_is_refused_in_one_line(tmp_path):
    from click.testing import CliRunner

    from backspace_cli.cli.convert import convert

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    result = CliRunner().invoke(convert, [str(folder)])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {folder} is not a Hugging Face checkpoint folder: it has no config.json "
                             "(save the model with save_pretrained)\n")


def test_a_tokenizer_without_the_delete_token_is_refused_before_converting(tmp_path):
    pytest.importorskip("transformers")
    from click.testing import CliRunner

    from backspace_cli.cli.convert import convert

    folder = tmp_path / "plain"
    make_model(folder, specials=[s for s in SPECIALS if s != DELETE])
    result = CliRunner().invoke(convert, [str(folder)])
    assert result.exit_code == 1 and ONE_LINE_ERROR.fullmatch(result.stderr)
    assert result.stderr.startswith(f"Error: '{DELETE}' is not in {folder}'s tokenizer: add it as a special token")
    assert leftovers(tmp_path, folder) == []


def test_a_missing_import_of_the_converter_names_the_extra_that_installs_it(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(hf_checkpoint, "CONVERTER_IMPORTS", ("json", "no_such_module_for_the_converter"))
    with pytest.raises(UserError) as refused:
        convert_checkpoint(tmp_path, tmp_path / "out.gguf")
    assert str(refused.value) == ("converting a checkpoint folder needs no_such_module_for_the_converter (llama.cpp's "
                                  "converter imports them): in backspace's checkout, pip install -e '.[test]'")
    assert leftovers(tmp_path, tmp_path / "config.json") == []


@pytest.mark.parametrize("option", [["--mode", "append"], ["--reuse", "3"], ["--init", "zero"],
                                    ["--marker", "[DELETE]"], ["--check"], ["--rows", "rows.npy"]])
def test_options_for_a_gguf_file_are_refused_for_a_folder(tmp_path, option):
    from click.testing import CliRunner

    from backspace_cli.cli.convert import convert

    result = CliRunner().invoke(convert, [str(tmp_path), *option])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {option[0]} is for a GGUF file, not a checkpoint folder (whose tokenizer's "
                             "delete token is marked)\n")


def test_outtype_is_refused_for_a_gguf_file(tiny_llama_path):
    from click.testing import CliRunner

    from backspace_cli.cli.convert import convert

    result = CliRunner().invoke(convert, [str(tiny_llama_path), "--outtype", "f16"])
    assert result.exit_code == 1
    assert result.stderr == "Error: --outtype is for a checkpoint folder: a GGUF file keeps its tensor types\n"


@pytest.mark.parametrize("pre_tokenizer, gpt2", [
    ({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}, True),
    ({"type": "ByteLevel", "add_prefix_space": False}, True),  # the tokenizers library's use_regex default
    ({"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}, False),
    ({"type": "ByteLevel", "use_regex": True}, False),  # the library adds a prefix space by default
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}, False),
    ({"type": "Sequence", "pretokenizers": [{"type": "Split"}, {"type": "ByteLevel", "add_prefix_space": False}]},
     False),
    ({"type": "Metaspace", "replacement": "▁"}, False),
    (None, False),
])
def test_gpt2_is_named_only_for_a_byte_level_pre_tokenizer_with_its_regex_and_no_prefix_space(
        tmp_path, pre_tokenizer, gpt2):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(json.dumps({"version": "1.0", "pre_tokenizer": pre_tokenizer, "model": {"type": "BPE"}}))
    assert names_gpt2(tokenizer) is gpt2
    tokenizer.write_text("not json")
    assert names_gpt2(tokenizer) is False
    assert names_gpt2(tmp_path / "absent.json") is False


def test_the_sdist_is_the_one_the_makefile_pins_in_the_same_cache_folder(tmp_path, monkeypatch):
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert re.search(r"^LLAMA_CPP_PYTHON := (\S+)$", makefile, re.M)[1] == defaults.LLAMA_CPP_PYTHON
    assert "CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/backspace" in makefile
    assert "LLAMA_SDIST := $(CACHE_DIR)/sdist/llama-cpp-python-$(LLAMA_CPP_PYTHON)" in makefile
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = f"backspace/sdist/llama-cpp-python-{defaults.LLAMA_CPP_PYTHON}"
    assert llama_sdist.sdist_folder() == tmp_path / "xdg" / expected
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert llama_sdist.sdist_folder() == tmp_path / "home" / ".cache" / expected


def test_the_tests_find_the_real_model_where_make_models_puts_it(tmp_path, monkeypatch):
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"SMOLLM2 := $(CACHE_DIR)/{real_model.SMOLLM2_FILE}" in makefile
    monkeypatch.delenv("BACKSPACE_TEST_MODEL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert real_model.smollm2() == tmp_path / "xdg" / "backspace" / real_model.SMOLLM2_FILE
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert real_model.smollm2() == tmp_path / "home" / ".cache" / "backspace" / real_model.SMOLLM2_FILE
    monkeypatch.setenv("BACKSPACE_TEST_MODEL", str(tmp_path / "mine.gguf"))
    assert real_model.smollm2() == tmp_path / "mine.gguf"


@pytest.mark.skipif(not os.environ.get(SDIST_ENV), reason=SDIST_MISSING)
def test_the_converter_is_extracted_once_beside_the_sdist_and_found_in_the_cache(tmp_path, monkeypatch):
    tarball = Path(os.environ[SDIST_ENV]).resolve()
    named = tmp_path / "given" / tarball.name
    named.parent.mkdir()
    named.symlink_to(tarball)
    monkeypatch.setenv(SDIST_ENV, str(named))
    steps = []
    script = llama_sdist.converter_script(steps.append)
    assert script == named.parent / tarball.name.removesuffix(".tar.gz") / llama_sdist.CONVERTER
    assert (script.parent / "conversion" / "base.py").is_file() and (script.parent / "gguf-py" / "gguf").is_dir()
    assert steps == [f"extracting llama.cpp's converter from {tarball.name}"]
    assert leftovers(named.parent, named, script.parents[2]) == []  # no temporary folder stays
    assert llama_sdist.converter_script(steps.append) == script and len(steps) == 1  # once

    # Without the variable: the sdist that `make sdist` (or an earlier run) downloaded into the cache folder.
    monkeypatch.delenv(SDIST_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cached = llama_sdist.sdist_folder()
    cached.mkdir(parents=True)
    (cached / tarball.name).symlink_to(tarball)
    (cached / llama_sdist.DOWNLOADED).touch()
    script = llama_sdist.converter_script(steps.append)
    assert script == cached / tarball.name.removesuffix(".tar.gz") / llama_sdist.CONVERTER and script.is_file()
    assert not any("fetching" in step for step in steps)


def test_a_named_sdist_that_is_missing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(SDIST_ENV, str(tmp_path / "absent.tar.gz"))
    with pytest.raises(UserError, match=f"{SDIST_ENV} names no file: "):
        llama_sdist.converter_script(print)
