"""llama.cpp's convert_hf_to_gguf.py from the pinned llama-cpp-python sdist: where it is cached, fetched once, extracted once.

The sdist is the one the Makefile downloads for the wheel (`make sdist`), in the same folder:
sdist/llama-cpp-python-VERSION/ in backspace's cache folder. BACKSPACE_LLAMA_SDIST names
a tarball to use instead, so that nothing is downloaded. The converter, with the conversion/ package and the
gguf-py that it imports, is extracted beside the tarball. Each step builds in a temporary folder and renames
it into place, so an interrupted fetch or extraction leaves nothing that a later run would take as done.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import defaults
from .cache import cache_folder
from .errors import UserError

SDIST_ENV = "BACKSPACE_LLAMA_SDIST"
PACKAGE = "llama-cpp-python"
CONVERTER = "vendor/llama.cpp/convert_hf_to_gguf.py"
# What the converter needs beside it, as paths inside the sdist's top folder.
CONVERTER_PARTS = (CONVERTER, "vendor/llama.cpp/conversion/", "vendor/llama.cpp/gguf-py/")
DOWNLOADED = ".downloaded"  # the Makefile's stamp: a folder with it holds a complete download


def sdist_folder() -> Path:
    """Where the pinned sdist is kept, the same folder as the Makefile's LLAMA_SDIST."""
    return cache_folder() / "sdist" / f"{PACKAGE}-{defaults.LLAMA_CPP_PYTHON}"


def converter_script(report: Callable[[str], None]) -> Path:
    """The path of convert_hf_to_gguf.py, fetching and extracting it first if this is the first time."""
    given = os.environ.get(SDIST_ENV)
    if given:
        tarball = Path(given)
        if not tarball.is_file():
            raise UserError(f"{SDIST_ENV} names no file: {tarball}")
    else:
        tarball = _cached_tarball(report)
    return _extracted(tarball, report)


def _cached_tarball(report: Callable[[str], None]) -> Path:
    folder = sdist_folder()
    if not (folder / DOWNLOADED).is_file():
        report(f"fetching llama.cpp's converter: pip download {PACKAGE}=={defaults.LLAMA_CPP_PYTHON} "
               f"(once, into {folder})")
        _download(folder)
    tarballs = sorted(folder.glob("*.tar.gz"))
    if len(tarballs) != 1:
        raise UserError(f"expected one {PACKAGE} sdist (.tar.gz) in {folder}: remove the folder to fetch it again")
    return tarballs[0]


def _download(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".partial"))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             "-d", str(partial), f"{PACKAGE}=={defaults.LLAMA_CPP_PYTHON}"],
            capture_output=True, text=True, errors="replace",
        )
        if run.returncode != 0:
            lines = [line for line in (run.stderr + run.stdout).splitlines() if line.strip()]
            why = lines[-1].strip() if lines else f"exit status {run.returncode}"
            raise UserError(f"could not download {PACKAGE} {defaults.LLAMA_CPP_PYTHON}'s sdist ({why}): "
                            f"set {SDIST_ENV} to its .tar.gz")
        (partial / DOWNLOADED).touch()
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder without the stamp
        _move_into_place(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _extracted(tarball: Path, report: Callable[[str], None]) -> Path:
    """Extract the converter's parts of `tarball` beside it, once, into a folder named as the tarball; the
    script's path."""
    folder = tarball.parent / tarball.name.removesuffix(".tar.gz")
    script = folder / CONVERTER
    if script.is_file():
        return script
    if folder.exists():
        raise UserError(f"{folder} exists without {CONVERTER}: remove it to extract the converter again")
    report(f"extracting llama.cpp's converter from {tarball.name}")
    try:
        staging = Path(tempfile.mkdtemp(dir=tarball.parent, prefix=f".{folder.name}.", suffix=".partial"))
    except OSError as error:
        raise UserError(f"cannot extract the converter beside {tarball}: {error.strerror}") from None
    try:
        try:
            with tarfile.open(tarball) as sdist:
                # NAME-VERSION/vendor/...: the first part of each path is the sdist's own folder.
                members = [m for m in sdist.getmembers() if m.name.partition("/")[2].startswith(CONVERTER_PARTS)]
                sdist.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise UserError(f"cannot read the sdist {tarball}: {error}") from None
        found = list(staging.glob(f"*/{CONVERTER}"))
        if len(found) != 1:
            raise UserError(f"{tarball} holds no {CONVERTER}: is it llama-cpp-python's sdist?")
        _move_into_place(found[0].parents[2], folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return script


def _move_into_place(built: Path, target: Path) -> None:
    """Rename a finished folder to `target`; if another run got there first, its copy is as good."""
    try:
        os.rename(built, target)
    except OSError:
        if not target.is_dir():
            raise
