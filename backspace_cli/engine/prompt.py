"""How a prompt becomes tokens, the same for chat, complete, eval, the Python API and serve: messages through
the chat template, whose own markup alone is read for control tokens; a raw prompt as text, after the BOS
that the model asks for."""
from .chat_template import ChatTemplate
from .engine import PromptTooLong
from .model import Model
from .stopping import Stop

# A raw prompt to continue, or chat messages ({"role": ..., "content": ...}) for the model's template.
Prompt = str | list[dict[str, str]]


def prompt_tokens(model: Model, prompt: Prompt, template: ChatTemplate | None = None,
                  stop: Stop | None = None) -> list[int]:
    """`template`: the chat template for messages, if one is open already (else the model's). `stop`,
    asked between the messages' runs of text, ends the work with Stopped (a raw prompt is one run)."""
    if isinstance(prompt, str):
        # Raw text is a user's too (a file, a pipe, a request), so "<|delete|>" in it is text.
        return model.tokenize(prompt, add_bos=True, special=False)
    if len(prompt) > model.n_ctx:  # no template fits them: refused before it runs on them all
        raise PromptTooLong(f"the prompt has {len(prompt)} messages; the context holds {model.n_ctx} tokens")
    return (template or ChatTemplate(model)).tokens(prompt, stop)
