"""Seeded fuzzing of model files: mutants of the built-in model's header and metadata, each run through
`complete`, one-shot `chat`, `inspect` and `convert`, end with an exit status (never a signal), print no
traceback, finish in time and leave the file as it was.

The suite runs a few dozen; `make fuzz` runs thousands (python tests/test_fuzz.py --mutants N --seed S),
lists what it finds and keeps those mutants for a look."""
import argparse
import hashlib
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from backspace_cli.default_model import default_model_path
from backspace_convert.reader import open_gguf

SEED = 19
MUTANTS = 50
TIME_LIMIT = 60  # seconds for one command, on a shared two-core machine
MAX_FLIPS = 4  # bytes changed in one mutant
WORKERS = 2


def metadata_end(path: Path) -> int:
    """Where the tensor index begins: everything before it is the header and the key-value section."""
    name = open_gguf(path).tensors[0].name.encode()
    return path.read_bytes().index(struct.pack("<Q", len(name)) + name)


def mutant(source: bytes, end: int, rng: random.Random) -> bytes:
    data = bytearray(source)
    for _ in range(rng.randint(1, MAX_FLIPS)):
        data[rng.randrange(end)] = rng.randrange(256)
    return bytes(data)


def commands(path: Path) -> dict[str, list[str]]:
    quick = ["-n", "2", "-t", "1", "-c", "64", "--seed", "1"]
    return {
        "complete": ["complete", "-m", str(path), *quick, "The"],
        "chat": ["chat", "-m", str(path), *quick, "What is 1+1?"],
        "inspect": ["inspect", str(path)],
        "convert": ["convert", str(path), "-o", str(path.with_suffix(".out.gguf"))],
    }


class Forks:
    """Runs `backspace ARGV` in child processes forked from one that has imported the CLI, llama-cpp-python
    and their libraries once: each child is its own process, with its own exit status or signal, as the
    console script would be, without paying half a second of imports for each of thousands of runs."""

    def __init__(self) -> None:
        from backspace_cli.cli.main import main

        for module in ("llama_cpp", "llama_cpp.llama_chat_format", "jinja2.sandbox", "rich.console", "gguf"):
            __import__(module)
        self.main, self.started = main, 0

    def start(self, argv: list[str], directory: Path) -> tuple[int, Path]:
        self.started += 1
        stderr = directory / f"stderr-{self.started}.txt"
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                null, err = os.open(os.devnull, os.O_RDWR), os.open(stderr, os.O_WRONLY | os.O_CREAT)
                os.environ["XDG_STATE_HOME"] = str(directory)
                os.environ.pop("BACKSPACE_MODEL", None)
                os.dup2(null, 0), os.dup2(null, 1), os.dup2(err, 2)
                self.main(argv, prog_name="backspace")
            except SystemExit as exit:
                status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            except BaseException:  # what the console script would print and exit 1 on
                traceback.print_exc()
            finally:
                sys.stdout.flush(), sys.stderr.flush()
                os._exit(status)
        return pid, stderr


def fuzz(directory: Path, count: int, seed: int) -> list[str]:
    """Every finding: a mutant and command that died of a signal, ran past its time, printed a traceback or
    changed its input."""
    source_path = default_model_path()
    source, end = source_path.read_bytes(), metadata_end(source_path)
    rng = random.Random(seed)
    runs = []
    for index in range(count):
        path = directory / f"mutant-{seed}-{index}.gguf"
        path.write_bytes(mutant(source, end, rng))
        runs += [(name, argv, path) for name, argv in commands(path).items()]
    digests = {path: hashlib.sha256(path.read_bytes()).hexdigest() for _, _, path in runs}
    forks, running, findings = Forks(), {}, []
    while runs or running:
        while runs and len(running) < WORKERS:
            name, argv, path = runs.pop(0)
            pid, stderr = forks.start(argv, directory)
            running[pid] = (name, path, stderr, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            for pid, (name, path, stderr, began) in running.items():
                if time.monotonic() - began > TIME_LIMIT:
                    os.kill(pid, signal.SIGKILL)
                    findings.append(f"{path.name}: {name} ran past {TIME_LIMIT} s")
                    running[pid] = (name, path, stderr, float("inf"))  # reported once, reaped below
            time.sleep(0.01)
            continue
        name, path, stderr, _ = running.pop(pid)
        text = stderr.read_text(errors="replace")
        last = (text.strip().splitlines() or [""])[-1]
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            findings.append(f"{path.name}: {name} died of {signal.Signals(os.WTERMSIG(status)).name}: {last}")
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0, 1):
            findings.append(f"{path.name}: {name} ended with {os.WEXITSTATUS(status)}: {last}")
        elif "Traceback" in text:
            findings.append(f"{path.name}: {name} printed a traceback: {last}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digests[path]:
            findings.append(f"{path.name}: {name} changed its input")
    return findings


def test_mutated_model_files_end_cleanly(tmp_path):
    """In a process of its own, so that the forks start from a clean one."""
    result = subprocess.run([sys.executable, __file__, "--mutants", str(MUTANTS), "--seed", str(SEED),
                             "--keep", str(tmp_path / "findings")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(f"{MUTANTS} mutants x 4 commands: 0 findings\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="Fuzz backspace with mutants of the built-in model.")
    parser.add_argument("--mutants", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=Path("fuzz-findings"), help="where failing mutants go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        findings = fuzz(Path(directory), args.mutants, args.seed)
        if findings:
            args.keep.mkdir(exist_ok=True)
        for finding in findings:
            print(finding)
            name = finding.split(":", 1)[0]
            if (Path(directory) / name).exists():
                shutil.copy(Path(directory) / name, args.keep / name)
    print(f"{args.mutants} mutants x {len(commands(Path('m.gguf')))} commands: {len(findings)} findings")
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
