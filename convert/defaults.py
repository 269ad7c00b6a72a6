"""The converter's own defaults, each defined here and nowhere else (the CLI's options read them too)."""

INIT = "mean"  # how append mode starts the new token's rows without --rows
OUTPUT_SUFFIX = ".backspace.gguf"  # IN.gguf -> IN.backspace.gguf
