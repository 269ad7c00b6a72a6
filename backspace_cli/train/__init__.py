"""`backspace train`: teach a transformers causal LM to delete, on contexts the engine can really be in (needs the train extra)."""
