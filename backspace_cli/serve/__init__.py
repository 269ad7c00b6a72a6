"""`backspace serve`: an OpenAI-compatible HTTP server over one model, and a page that shows its edit stream."""
