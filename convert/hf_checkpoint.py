"""A Hugging Face checkpoint folder to a backspace GGUF in one step: llama.cpp's converter, then mark mode.

    from backspace_convert.hf_checkpoint import convert_checkpoint
    convert_checkpoint("my-finetune", "my-finetune.gguf")  # -> Path("my-finetune.gguf")

The folder is what save_pretrained writes (config.json, *.safetensors, the tokenizer), and its tokenizer has
the delete token as a special token. The pinned sdist's convert_hf_to_gguf.py (llama_sdist) runs in a
subprocess of this Python through hf_runner, into a temporary file; convert_file's mark mode then writes the
output, atomically. Module-level imports stay cheap: the CLI reads OUTTYPES for its option.
"""
import importlib.util
import json
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import defaults, hf_runner, keys, llama_sdist
from .atomic import atomic_output
from .errors import UserError, missing_extra

OUTTYPES = ("auto", "f32", "f16", "bf16", "q8_0")  # convert_hf_to_gguf.py's --outtype, less the ternary types
CONVERTER_IMPORTS = ("torch", "transformers", "sentencepiece")
CONVERTER_EXTRA = "test"  # the extra that installs CONVERTER_IMPORTS
LOG_PREFIX = re.compile(r"^(?:CRITICAL|ERROR|WARNING|INFO|DEBUG):[\w.-]+:")  # logging's default format


def convert_checkpoint(
    folder: str | Path,
    output: str | Path | None = None,
    *,
    outtype: str = defaults.OUTTYPE,
    token: str = keys.DELETE_TOKEN_TEXT,
    force: bool = False,
    metadata: dict | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Convert the checkpoint `folder` into a backspace model at `output` (default FOLDER.backspace.gguf beside
    it) and return its path; raises UserError with one line. `metadata` (key -> plan.Value) is written too,
    such as a trainer's recommended sampling. `report(line)` hears each step."""
    from .convert import convert_file, default_output  # gguf and numpy, loaded only for a conversion
    from .plan import ConvertSpec

    folder = Path(folder)
    report = report or (lambda line: None)
    if outtype not in OUTTYPES:
        raise UserError(f"unknown outtype {outtype!r}: one of {', '.join(OUTTYPES)}")
    _check_folder(folder, token)
    _check_converter_imports()
    target = Path(output) if output is not None else default_output(folder.resolve())
    with atomic_output(target, force) as written:
        script = llama_sdist.converter_script(report)
        # Beside the output: a converted model can be larger than the system's temporary folder.
        with tempfile.TemporaryDirectory(dir=written.parent, prefix=f".{target.name}.", suffix=".converting") as work:
            converted = Path(work) / "converted.gguf"
            report(f"converting {folder} with llama.cpp's convert_hf_to_gguf.py (--outtype {outtype})")
            _run_converter(script, folder, converted, outtype, report)
            report("marking the delete token")
            result = convert_file(converted, written, ConvertSpec(mode="mark", token=token, metadata=metadata or {}),
                                  force=True)
            report(result.edit.summary)
    return target


def _check_folder(folder: Path, token: str) -> None:
    if not folder.is_dir():
        raise UserError(f"no such folder: {folder}" if not folder.exists() else f"not a folder: {folder}")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a Hugging Face checkpoint folder: it has no config.json "
                        "(save the model with save_pretrained)")
    vocabulary = _tokenizer_texts(folder / "tokenizer.json")
    if vocabulary is not None and token not in vocabulary:
        raise UserError(f"{token!r} is not in {folder}'s tokenizer: add it as a special token before fine-tuning "
                        f"(tokenizer.add_special_tokens({{'additional_special_tokens': [{token!r}]}}))")


def _tokenizer_texts(tokenizer_json: Path) -> set[str] | None:
    """Every token text in tokenizer.json, or None when there is none to read (the converter then decides)."""
    try:
        tokenizer = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        texts = {added["content"] for added in tokenizer.get("added_tokens") or ()}
        vocab = (tokenizer.get("model") or {}).get("vocab") or {}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    # A BPE or WordPiece vocabulary maps text to id; a Unigram one is a list of [text, score].
    texts.update(vocab if isinstance(vocab, dict) else (entry[0] for entry in vocab if entry))
    return texts


def _check_converter_imports() -> None:
    missing = [name for name in CONVERTER_IMPORTS if importlib.util.find_spec(name) is None]
    if missing:
        raise missing_extra(f"converting a checkpoint folder needs {', '.join(missing)} (llama.cpp's converter "
                            "imports them)", CONVERTER_EXTRA)


def _run_converter(script: Path, folder: Path, outfile: Path, outtype: str, report: Callable[[str], None]) -> None:
    """Run the converter through hf_runner; its notes are reported, and a failure is its last line."""
    command = [sys.executable, "-m", hf_runner.__name__, str(script), str(folder.resolve()),
               "--outfile", str(outfile), "--outtype", outtype]
    # Ctrl-C or SIGTERM between the fork and Popen's return would leave the converter running with no one
    # to stop it: they wait, blocked, until `process` is known; the converter itself starts unblocked.
    interrupts = {signal.SIGINT, signal.SIGTERM}
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts)
    try:
        # The empty work folder as the current one: nothing there can shadow a module the converter imports.
        process = subprocess.Popen(command, cwd=outfile.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace",
                                   preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, unblocked))
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        raise
    last = ""
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)  # a signal that waited arrives here
        for line in process.stdout:
            line = line.strip()
            if line.startswith(hf_runner.NOTE):
                report(line[len(hf_runner.NOTE):])
            elif line:
                last = line
        status = process.wait()
    finally:  # Ctrl-C or a kill of this process: the converter stops too
        if process.poll() is None:
            process.terminate()
            process.wait()
        process.stdout.close()
    if status != 0 or not outfile.is_file():
        why = LOG_PREFIX.sub("", last) or f"exit status {status}"
        raise UserError(f"convert_hf_to_gguf.py could not convert {folder}: {why}")
