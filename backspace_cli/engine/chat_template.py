"""Chat prompts from the model's own template (tokenizer.chat_template), through llama-cpp-python's Jinja2 formatter."""
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from .model import Model

# For models that ship no template: ChatML, the format most small instruct models are tuned on.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ChatTemplate:
    def __init__(self, model: Model) -> None:
        template = model.metadata.get("tokenizer.chat_template")
        self.source = "the model's" if template else "ChatML (the model has none)"
        llama = model.llama
        self._model = model
        self._formatter = Jinja2ChatFormatter(
            template=template or CHATML,
            eos_token=model.token_text(llama.token_eos()) if llama.token_eos() >= 0 else "",
            bos_token=model.token_text(llama.token_bos()) if llama.token_bos() >= 0 else "",
            add_generation_prompt=True,
        )

    def tokens(self, messages: list[dict[str, str]]) -> list[int]:
        prompt = self._formatter(messages=messages).prompt
        # The template writes the special tokens (BOS included) itself.
        return self._model.tokenize(prompt, add_bos=False, special=True)
