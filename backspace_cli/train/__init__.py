"""`backspace train`: teach a transformers causal LM to delete, on contexts the engine can really be in (needs the train extra)."""
import os

# Before torch loads: its OpenMP threads sleep, not spin, while they wait. On a busy machine with few cores,
# spinning threads slow every step several times over (training/NOTES.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
