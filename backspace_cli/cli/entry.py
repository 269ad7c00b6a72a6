"""The `backspace` program: Ctrl-C is answered from its first moment, then the command runs."""
from .signals import exit_interrupted, ignore_from_now


def main() -> None:
    try:
        from .main import main as commands  # the imports take a moment, and Ctrl-C may come during them
    except KeyboardInterrupt:
        exit_interrupted()
    try:
        commands()
    finally:
        ignore_from_now()
