"""The converter's own defaults, each defined here and nowhere else (the CLI's options read them too)."""

INIT = "mean"  # how append mode starts the new token's rows without --rows
OUTPUT_SUFFIX = ".backspace.gguf"  # IN.gguf -> IN.backspace.gguf
# The llama-cpp-python release whose vendored llama.cpp the engine runs; the Makefile pins the same
# (LLAMA_CPP_PYTHON), and a checkpoint folder is converted with the convert_hf_to_gguf.py in its sdist.
LLAMA_CPP_PYTHON = "0.3.36"
OUTTYPE = "auto"  # a checkpoint folder's tensor type: convert_hf_to_gguf.py's default (bf16 if saved so, else f16)
