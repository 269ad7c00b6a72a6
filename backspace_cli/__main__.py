"""`python -m backspace_cli` runs the command line."""
from .cli.main import main

main()
