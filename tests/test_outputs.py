"""Every command that writes a file never harms what it replaces: real files, devices, FIFOs and symlinks,
through the real commands (synth -o and --tokenized, convert -o, eval --answers, chat /save).

A regular file is written atomically (in the real file's directory, for a symlink); a character device
or a FIFO is written into and stays what it was; a block device, a socket or an unwritable directory is
one line. No error leaves a `.partial` temporary file in any directory involved.
"""
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from backspace_cli.chat.chat import Chat
from backspace_cli.chat.commands import run_command
from backspace_cli.chat.repl import Repl
from backspace_cli.cli.convert import convert
from backspace_cli.cli.data import eval_command, synth
from backspace_cli.default_model import default_model_path
from backspace_cli.engine.session import Session
from backspace_cli.settings import Settings
from backspace_convert.atomic import PARTIAL, atomic_output, output_stream
from backspace_convert.errors import UserError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="os.mknod of a device needs root (CI runs as root)")
SAMPLES = ['{"prompt": "What is 2+3?", "response": "5"}', '{"prompt": "add 7 and 15", "response": "22"}']


@dataclass
class Writer:
    """One command that writes a file: `write(target)` runs it and gives its one-line error, or None."""

    name: str
    write: Callable[[Path], str | None]
    valid: Callable[[bytes], bool]  # is this what the command writes?


def jsonl_with(key: str) -> Callable[[bytes], bool]:
    def valid(data: bytes) -> bool:
        lines = data.decode().splitlines()
        return bool(lines) and all(key in json.loads(line) for line in lines)
    return valid


def invoked(command, *args) -> str | None:
    result = CliRunner().invoke(command, [str(arg) for arg in args])
    if result.exit_code == 0:
        return None
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.removeprefix("Error: ").strip()


@pytest.fixture(scope="module")
def writers(tmp_path_factory, tiny_llama_path, tiny_llama_without_delete_path) -> dict[str, Writer]:
    folder = tmp_path_factory.mktemp("inputs")
    samples, tasks, elsewhere = folder / "samples.jsonl", folder / "tasks.jsonl", folder / "other.jsonl"
    samples.write_text("\n".join(SAMPLES) + "\n")
    tasks.write_text('{"prompt": "What is 2+3?", "answer": "5"}\n')
    builtin = default_model_path()
    assert builtin is not None, "the built-in model is missing: run make demo-model"
    settings = Settings(model=str(tiny_llama_path), temp=0.0, max_tokens=4, ctx_size=256, threads=2)
    repl = Repl(Console(record=True), Chat(Session(settings)), trace=False, reader=None)

    def save(target: Path) -> str | None:
        try:
            run_command(repl, f"/save {target}")
        except UserError as error:
            assert "\n" not in str(error)
            return str(error)
        return None

    return {writer.name: writer for writer in [
        Writer("synth -o", lambda target: invoked(synth, samples, "-o", target, "-q"), jsonl_with("messages")),
        Writer("synth --tokenized", lambda target: invoked(synth, samples, "-o", elsewhere, "--tokenized", target,
                                                          "--tokenizer", builtin, "-q"), jsonl_with("input_ids")),
        # --force: not even a forced convert may replace a device or a FIFO
        Writer("convert -o", lambda target: invoked(convert, tiny_llama_without_delete_path, "-o", target, "--force"),
               lambda data: data[:4] == b"GGUF" and len(data) > 1000),
        Writer("eval --answers", lambda target: invoked(eval_command, tasks, "-m", builtin, "--limit", 1, "-n", 4,
                                                       "-t", 2, "--answers", target), jsonl_with("setting")),
        Writer("chat /save", save, lambda data: json.loads(data)["exchanges"] == []),
    ]}


@pytest.fixture(params=["synth -o", "synth --tokenized", "convert -o", "eval --answers", "chat /save"])
def writer(request, writers) -> Writer:
    return writers[request.param]


def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two directories: `here` for the link, `there` for what it points to."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    return here, there


def partials(*folders: Path) -> list[Path]:
    """The temporary files left in these folders and in the (test's own) system temporary directory."""
    return [path for folder in (*folders, Path(tempfile.gettempdir()))
            for path in folder.iterdir() if path.name.endswith(PARTIAL)]


class FifoReader:
    """Reads a FIFO to its end in a thread, so that a writer does not block forever."""

    def __init__(self, path: Path):
        self.path, self.data = path, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as fifo:
            self.data = fifo.read()

    def result(self) -> bytes:
        """Called once the writer is done, so the reader needs only a moment to reach the end."""
        self.thread.join(timeout=10)
        if self.thread.is_alive():  # nobody wrote: give the reader its end of file, then fail
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(timeout=10)
            pytest.fail(f"nothing opened the FIFO {self.path} for writing")
        return self.data


@pytest.fixture(autouse=True)
def staging(tmp_path_factory, monkeypatch):
    """A system temporary directory of the test's own, where a device's or a FIFO's output is staged."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("staging")))


@pytest.fixture
def bounded():
    """A writer that blocks (on a FIFO with no reader) fails the test instead of hanging it."""
    def give_up(signum, frame):
        pytest.fail("the write did not finish within 120 s")
    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_new_file_is_written(writer, tmp_path):
    target = tmp_path / "out"
    assert writer.write(target) is None
    assert writer.valid(target.read_bytes())
    assert sorted(tmp_path.iterdir()) == [target] and partials(tmp_path) == []


def test_an_existing_file_is_replaced_whole(writer, tmp_path):
    target = tmp_path / "out"
    target.write_bytes(b"old content, longer than nothing")
    assert writer.write(target) is None
    assert writer.valid(target.read_bytes())
    assert sorted(tmp_path.iterdir()) == [target] and partials(tmp_path) == []


def test_a_fifo_gets_the_output_and_stays_a_fifo(writer, tmp_path, bounded):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    assert writer.write(fifo) is None
    assert writer.valid(reader.result())
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert partials(tmp_path) == []


def test_a_symlink_into_another_directory_is_followed_and_stays_a_link(writer, tmp_path):
    here, there = folders(tmp_path)
    (there / "real").write_bytes(b"old")
    link = here / "link"
    link.symlink_to("../there/real")
    assert writer.write(link) is None
    assert link.is_symlink() and os.readlink(link) == "../there/real"
    assert writer.valid((there / "real").read_bytes())
    assert sorted(here.iterdir()) == [link] and sorted(there.iterdir()) == [there / "real"]
    assert partials(here, there) == []


def test_a_dangling_symlink_gets_its_file_made_where_it_points(writer, tmp_path):
    here, there = folders(tmp_path)
    link = here / "link"
    link.symlink_to(there / "new")
    assert writer.write(link) is None
    assert link.is_symlink() and writer.valid((there / "new").read_bytes())
    assert partials(here, there) == []


def test_a_symlink_to_a_fifo_elsewhere_writes_into_the_fifo(writer, tmp_path, bounded):
    here, there = folders(tmp_path)
    fifo = there / "pipe"
    os.mkfifo(fifo)
    link = here / "link"
    link.symlink_to(fifo)
    reader = FifoReader(fifo)
    assert writer.write(link) is None
    assert writer.valid(reader.result())
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert partials(here, there) == []


@root_only
def test_a_character_device_is_written_into_and_stays_a_device(writer, tmp_path):
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    link = tmp_path / "link"
    link.symlink_to(null)
    for target in (null, link):
        assert writer.write(target) is None
        assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    assert link.is_symlink()
    assert sorted(tmp_path.iterdir()) == [link, null] and partials(tmp_path) == []


@root_only
def test_a_device_that_fails_the_write_is_one_line(writer, tmp_path):
    full = tmp_path / "full"
    os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers: every write fails, disk full
    assert writer.write(full) == f"cannot write {full}: No space left on device"
    assert stat.S_ISCHR(os.lstat(full).st_mode) and partials(tmp_path) == []


@root_only
def test_a_block_device_is_refused_with_one_line(writer, tmp_path):
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(7, 0))  # a loop device's numbers; never opened
    assert writer.write(disk) == f"output is a block device: {disk} (write to a file, not to a disk)"
    assert stat.S_ISBLK(os.lstat(disk).st_mode) and partials(tmp_path) == []


def test_a_socket_is_refused_with_one_line(writer, tmp_path):
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        assert writer.write(path) == f"output is a socket: {path} (write to a file, a FIFO or a device)"
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and partials(tmp_path) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that refuses new files for real: mode 0500, and as root (who ignores modes) immutable."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "kept").write_bytes(b"kept")
    locked.chmod(0o500)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        locked.chmod(0o700)
        pytest.skip("root writes through mode 0500, and chattr +i does not work here")
    yield locked
    if immutable:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    locked.chmod(0o700)


def test_a_read_only_directory_is_one_line_and_leaves_nothing(writer, read_only_dir):
    message = writer.write(read_only_dir / "out")
    assert message.startswith(f"cannot write to the output directory {read_only_dir}: ")
    assert sorted(read_only_dir.iterdir()) == [read_only_dir / "kept"] and partials(read_only_dir) == []


def test_a_symlink_into_a_read_only_directory_names_that_directory(writer, tmp_path, read_only_dir):
    link = tmp_path / "link"
    link.symlink_to(read_only_dir / "out")
    assert writer.write(link).startswith(f"cannot write to the output directory {read_only_dir}: ")
    assert link.is_symlink() and partials(tmp_path, read_only_dir) == []


def test_a_missing_directory_is_one_line(writer, tmp_path):
    assert writer.write(tmp_path / "missing" / "out") == f"output directory does not exist: {tmp_path / 'missing'}"
    assert sorted(tmp_path.iterdir()) == []


def test_convert_refuses_an_existing_file_and_a_link_to_one_without_force(tmp_path, tiny_llama_without_delete_path):
    existing = tmp_path / "out.gguf"
    existing.write_bytes(b"precious")
    link = tmp_path / "link.gguf"
    link.symlink_to(existing)
    for target in (existing, link):
        message = invoked(convert, tiny_llama_without_delete_path, "-o", target)
        assert message == f"output exists: {target} (use --force to replace it)"
    assert existing.read_bytes() == b"precious" and link.is_symlink() and partials(tmp_path) == []


def test_convert_never_writes_over_its_input_even_through_a_link(tmp_path, tiny_llama_without_delete_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(tiny_llama_without_delete_path.read_bytes())
    link = tmp_path / "link.gguf"
    link.symlink_to(source)
    message = invoked(convert, source, "-o", link, "--force")
    assert message == f"the output would overwrite the input {source}: the input is never modified"
    assert source.read_bytes() == tiny_llama_without_delete_path.read_bytes()


def test_a_file_that_outgrows_its_limit_midway_leaves_nothing(tmp_path, tiny_llama_without_delete_path):
    """The write fails partway (as on a full disk): the error is one line, and no partial file stays."""
    import resource

    target = tmp_path / "out.gguf"
    limit = tiny_llama_without_delete_path.stat().st_size // 2
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        message = invoked(convert, tiny_llama_without_delete_path, "-o", target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert message == f"cannot write {target}: File too large"
    assert sorted(tmp_path.iterdir()) == [] and partials(tmp_path) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, ValueError])
@pytest.mark.parametrize("opener", [atomic_output, output_stream])
def test_an_interrupted_or_failing_writer_leaves_the_target_untouched(tmp_path, failure, opener):
    here, there = folders(tmp_path)
    (there / "real").write_bytes(b"old")
    link = here / "link"
    link.symlink_to(there / "real")
    for target in (there / "real", link, here / "new"):
        with pytest.raises(failure):
            with opener(target, force=True) as output:
                (output.write_text if isinstance(output, Path) else output.write)("half")
                raise failure
        assert (there / "real").read_bytes() == b"old" and link.is_symlink()
        assert not (here / "new").exists() and partials(here, there) == []


def test_a_fifo_whose_reader_goes_away_is_one_line(tmp_path, bounded):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    closer = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_RDONLY)), daemon=True)
    closer.start()
    with pytest.raises(UserError, match=f"^cannot write {fifo}: Broken pipe$"):
        with output_stream(fifo, force=False) as stream:
            closer.join()
            for _ in range(1000):
                stream.write("x" * 1000 + "\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
