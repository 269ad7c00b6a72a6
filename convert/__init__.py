"""backspace_convert: puts the delete token into GGUF models (installed from convert/)."""
