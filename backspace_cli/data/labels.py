"""The label a training loss skips, as transformers' labels spell it: synth writes it, the trainers read it."""

IGNORE = -100  # a token that learns nothing: the prompt, an injected error, a node with no target
