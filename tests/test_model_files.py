"""Model files that would make llama.cpp abort are refused first, with one line, by the engine and the
converter alike; and if llama.cpp aborts anyway, the user reads its reason and the process exits with a status."""
import os
import re
import signal
import subprocess
import sys
import time

import gguf
import pytest
from click.testing import CliRunner

import convert_models
import tiny_models
from backspace_cli.cli.main import main
from backspace_cli.engine.llama_hooks import ABORT_STATUS
from backspace_cli.engine.model import ModelError, load_model
from backspace_convert.validate import validate

V = gguf.GGUFValueType


def build(path, *, tokens=None, scores=None, types=None, **options):
    default_tokens, default_scores, default_types = tiny_models.vocabulary(None)
    return convert_models.build_plain(
        path, default_tokens if tokens is None else tokens, default_scores if scores is None else scores,
        default_types if types is None else types, **options,
    )


def duplicate(path):
    tokens = tiny_models.vocabulary(None)[0]
    tokens[300] = tokens[299]
    return build(path, tokens=tokens), f"tokens 299 and 300 have the same text {tokens[299]!r}: each must be unique"


def empty_named_like_another(path):
    tokens = tiny_models.vocabulary(None)[0]
    tokens[299], tokens[300] = "", "[EMPTY_299]"  # llama.cpp names an empty token [EMPTY_<id>]
    return build(path, tokens=tokens), "tokens 299 and 300 have the same text '[EMPTY_299]'"


def short_scores(path):
    scores = tiny_models.vocabulary(None)[1]
    return build(path, scores=scores[:-3]), f"tokenizer.ggml.scores has {len(scores) - 3} entries but the vocabulary has {len(scores)}"


def short_types(path):
    types = tiny_models.vocabulary(None)[2]
    return build(path, types=types[:-3]), f"tokenizer.ggml.token_type has {len(types) - 3} entries"


def scores_as_strings(path):
    tokens, scores, types = tiny_models.vocabulary(None)
    extra = {
        gguf.Keys.Tokenizer.MODEL: ("llama", V.STRING),
        gguf.Keys.Tokenizer.LIST: (tokens, V.ARRAY),
        gguf.Keys.Tokenizer.SCORES: ([str(score) for score in scores], V.ARRAY),
    }
    return build(path, tokenizer=False, extra=extra), "tokenizer.ggml.scores must be an ARRAY of FLOAT32, not ARRAY of STRING"


def tokens_as_numbers(path):
    extra = {gguf.Keys.Tokenizer.MODEL: ("llama", V.STRING), gguf.Keys.Tokenizer.LIST: ([1, 2, 3], V.ARRAY)}
    return build(path, tokenizer=False, extra=extra), "tokenizer.ggml.tokens must be an ARRAY of STRING"


def more_embedding_rows(path):
    n_vocab = len(tiny_models.vocabulary(None)[0])
    return build(path, embedding_rows=n_vocab + 4), f"the vocabulary has {n_vocab} tokens but token_embd.weight is {n_vocab + 4} x 64"


def vocab_size_disagrees(path):
    n_vocab = len(tiny_models.vocabulary(None)[0])
    extra = {"llama.vocab_size": (n_vocab + 1, V.UINT32)}
    return build(path, extra=extra), f"llama.vocab_size is {n_vocab + 1} but the vocabulary has {n_vocab} tokens"


def truncated_tensor_data(path):
    build(path)
    path.write_bytes(path.read_bytes()[:-1000])
    return path, "truncated GGUF tensor data"


def name_not_utf8(path):
    build(path, extra={gguf.Keys.General.NAME: ("tiny model", V.STRING)})
    data = path.read_bytes()
    path.write_bytes(data.replace(b"tiny model", b"tiny \xffodel", 1))
    return path, "corrupt GGUF file (general.name is not valid UTF-8)"


BROKEN = [duplicate, empty_named_like_another, name_not_utf8, short_scores, short_types, scores_as_strings, tokens_as_numbers,
          more_embedding_rows, vocab_size_disagrees, truncated_tensor_data]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda broken: broken.__name__)
def test_the_engine_refuses_before_llama_cpp_sees_the_file(tmp_path, broken):
    path, message = broken(tmp_path / "model.gguf")
    with pytest.raises(ModelError) as refused:
        load_model(path)
    assert message in str(refused.value) and str(refused.value).endswith(f": {path}")
    result = CliRunner().invoke(main, ["complete", "-m", str(path), "hello"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.parametrize("broken", BROKEN, ids=lambda broken: broken.__name__)
def test_the_converter_refuses_with_the_same_line(tmp_path, broken):
    path, message = broken(tmp_path / "model.gguf")
    result = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "out.gguf")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_inspect_shows_a_file_whose_vocabulary_is_broken_and_refuses_one_it_cannot_read(tmp_path):
    path, _ = duplicate(tmp_path / "duplicate.gguf")
    assert CliRunner().invoke(main, ["inspect", str(path)]).exit_code == 0
    path, message = name_not_utf8(tmp_path / "name.gguf")
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1 and result.stderr == f"Error: {message}: {path}\n"


def test_the_checks_are_cheap_on_a_real_vocabulary(smollm2_path):
    start = time.perf_counter()
    validate(smollm2_path)
    assert time.perf_counter() - start < 1.0  # a 49k-token vocabulary; loose for a shared CI machine


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_an_abort_in_llama_cpp_is_one_line_and_an_exit_status(tmp_path):
    """Past our checks, straight into llama.cpp: its GGML_ASSERT on a duplicate token ends the process,
    which says llama.cpp's reason and exits with a status, and runs no debugger."""
    path, _ = duplicate(tmp_path / "model.gguf")
    result = run_python(
        "import llama_cpp\nfrom backspace_cli.engine import llama_hooks\nllama_hooks.install()\n"
        f"llama_cpp.Llama({str(path)!r}, n_ctx=64, verbose=False)\n"
        "print('loaded')"
    )
    assert result.returncode == ABORT_STATUS
    assert result.stdout == ""
    assert re.fullmatch(r"Error: llama\.cpp aborted: llama-vocab\.cpp:\d+: "
                        r"GGML_ASSERT\(id_to_token\.size\(\) == token_to_id\.size\(\)\) failed\n", result.stderr)


GGML_ABORT = ("import ctypes, llama_cpp._ggml\n"
              "abort = ctypes.CDLL(llama_cpp._ggml.libggml._name).ggml_abort\n"
              "abort.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]\n"
              "abort(b'/build/ggml/src/ggml.c', 12, b'GGML_ASSERT(x) failed')")
REPORTED = "Error: llama.cpp aborted: ggml.c:12: GGML_ASSERT(x) failed\n"


def test_any_ggml_abort_is_reported_the_same_way_once_the_hooks_are_installed():
    result = run_python("from backspace_cli.engine import llama_hooks\nllama_hooks.install()\nllama_hooks.install()\n"
                        + GGML_ABORT)
    assert (result.returncode, result.stderr) == (ABORT_STATUS, REPORTED)


def test_importing_the_engine_installs_no_hook_and_loading_a_model_installs_them(tiny_llama_path):
    imported = subprocess.run([sys.executable, "-c", "import backspace_cli.engine.session\n" + GGML_ABORT],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    assert imported.returncode == -signal.SIGABRT and "Error:" not in imported.stderr
    loaded = run_python("from backspace_cli.engine.model import load_model\n"
                        f"load_model({str(tiny_llama_path)!r}, n_ctx=64, n_threads=1)\n" + GGML_ABORT)
    assert (loaded.returncode, loaded.stderr) == (ABORT_STATUS, REPORTED)
