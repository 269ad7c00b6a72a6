"""A byte-level BPE tokenizer trained on the tasks' own text, with ChatML and the delete token, for a model from scratch."""
from collections.abc import Iterable

# ChatML, the layout most small instruct models use; a reply ends with <|im_end|>.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
START, END = "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 512  # merges beyond the 256 bytes: a few hundred cover a small task's words and numbers


def train_tokenizer(texts: Iterable[str], delete_token: str):
    """The tokenizer, as transformers' fast tokenizer, with <|im_end|> as its end and padding token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[START, END, delete_token],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=END, pad_token=END,
                                        additional_special_tokens=[START, delete_token])
    tokenizer.chat_template = CHATML
    return tokenizer
