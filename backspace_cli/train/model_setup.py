"""The model and tokenizer to train: an HF folder, a GGUF that transformers dequantizes, or a small Llama from scratch."""
from dataclasses import dataclass, field
from pathlib import Path

from backspace_convert.errors import UserError
from backspace_convert.keys import DELETE_TOKEN_TEXT
from .recipe import read_json_object
from .scratch_tokenizer import train_tokenizer

# --from-scratch tiny: the size of the built-in model, a Llama whose few layers train on two CPU cores.
TINY_LLAMA = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 4, "max_position_embeddings": 512, "rope_theta": 10000.0,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
# The trees' 4-D boolean masks are SDPA's kind (eager attention would add them, as floats).
ATTENTION = "sdpa"
# The first token a reply's end writes: found by rendering a reply with this text in it, as the template does.
REPLY_PROBE = "\x00reply\x00"


@dataclass
class ModelBundle:
    """A causal LM and its tokenizer, with the delete token in both, and the facts the stages need."""

    model: object  # a transformers PreTrainedModel
    tokenizer: object  # a transformers PreTrainedTokenizerBase
    delete_id: int
    end_ids: frozenset[int]  # tokens that end a reply, as llama.cpp's end-of-generation set does
    reply_end: int  # the token a finished reply writes: its end of turn
    _prompts: dict = field(default_factory=dict, repr=False)  # by task: every stage asks for the same ones

    def prompt_ids(self, task) -> list[int]:
        """A task's prompt as the engine lays it out: the chat template, with the generation prompt."""
        ids = self._prompts.get(task.messages)
        if ids is None:
            ids = self._prompts[task.messages] = list(self.tokenizer.apply_chat_template(
                task.chat(), add_generation_prompt=True, tokenize=True, return_dict=False))
        return ids

    def answer_ids(self, task, answer: str) -> list[int]:
        """`answer`'s tokens as they follow the task's prompt in a chat that holds it, which is how a
        later turn's prompt gives them back to the engine (a tokenizer that adds a leading space to a
        text on its own would otherwise make other tokens)."""
        prompt = self.prompt_ids(task)
        whole = list(self.tokenizer.apply_chat_template(
            task.chat() + [{"role": "assistant", "content": answer}], tokenize=True, return_dict=False))
        if whole[: len(prompt)] == prompt and self.reply_end in whole[len(prompt):]:
            reply = whole[len(prompt):]
            return reply[: reply.index(self.reply_end)]
        return self.tokenizer.encode(answer, add_special_tokens=False)  # a template that rewrites the turn

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def load_bundle(model: str | None, from_scratch: str | None, tokenizer: str | None, task_texts: list[str],
                seed: int) -> ModelBundle:
    """`model` (an HF folder or a GGUF file), or `from_scratch` ("tiny" or a LlamaConfig JSON) with
    `tokenizer` or one trained on the tasks' text."""
    import torch
    import transformers

    if from_scratch is not None:
        tok = (_load_tokenizer(tokenizer) if tokenizer else train_tokenizer(task_texts, DELETE_TOKEN_TEXT))
        _add_delete_token(tok)
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(**_scratch_config(from_scratch), vocab_size=len(tok),
                                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                          pad_token_id=tok.pad_token_id, attn_implementation=ATTENTION)
        causal_lm = transformers.LlamaForCausalLM(config)
    else:
        causal_lm, tok = _load_pretrained(model)
        if _add_delete_token(tok):
            # New rows start at the mean of the others, so the new token is neither likely nor a stranger.
            causal_lm.resize_token_embeddings(len(tok), mean_resizing=True)
    if not getattr(tok, "chat_template", None):
        raise UserError(f"{model or from_scratch}: the tokenizer has no chat template: the engine lays prompts "
                        "out with one; give a tokenizer that has one (--tokenizer)")
    causal_lm.config.use_cache = True
    delete_id = tok.convert_tokens_to_ids(DELETE_TOKEN_TEXT)
    reply_end = _reply_end(tok)
    end_ids = frozenset(i for i in (tok.eos_token_id, reply_end) if i is not None)
    return ModelBundle(causal_lm, tok, delete_id, end_ids, reply_end)


def train_only_top_layers(model, count: int, delete_id: int) -> None:
    """Train only the top `count` decoder layers, the final norm and the delete token's output row (0: every
    weight). The rest of the vocabulary stays as it was, and no gradient flows back through the frozen
    layers to the input embeddings (a tied output head learns through its output side alone)."""
    import torch

    decoder = model.get_decoder()
    if count > len(decoder.layers):
        raise UserError(f"recipe field train_layers: the model has {len(decoder.layers)} layers, not {count}")
    for parameter in model.parameters():
        parameter.requires_grad_(count == 0)
    if not count:
        return
    for module in (*decoder.layers[-count:], decoder.norm):
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    head = model.get_output_embeddings().weight
    head.requires_grad_(True)
    if not getattr(head, "delete_row_only", False):
        row = torch.zeros(head.shape[0], 1)
        row[delete_id] = 1.0
        head.register_hook(lambda grad: grad * row.to(grad.device))
        model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output.detach())
        head.delete_row_only = True


def _scratch_config(name: str) -> dict:
    if name == "tiny":
        return dict(TINY_LLAMA)
    return {**TINY_LLAMA, **read_json_object(Path(name), "--from-scratch", "LlamaConfig settings (or: tiny)")}


def _load_tokenizer(path: str):
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise UserError(f"--tokenizer {path}: not a tokenizer transformers can load ({_one_line(error)})") from None


def _load_pretrained(model: str):
    """An HF checkpoint folder, or a GGUF file, which transformers loads dequantized."""
    import transformers

    path = Path(model)
    if not path.exists():
        raise UserError(f"{model}: no such file or folder")
    location, loading = {"pretrained_model_name_or_path": str(path)}, {}
    if path.is_file():
        location = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
        # Unpacked into a dense model that trains and saves; GGUF blocks kept packed would do neither.
        loading = {"quantization_config": transformers.GgufConfig(dequantize=True)}
    try:
        config = transformers.AutoConfig.from_pretrained(**location)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{model}: not a model transformers can load ({_one_line(error)})") from None
    if type(config) not in transformers.MODEL_FOR_CAUSAL_LM_MAPPING:
        raise UserError(f"{model}: a {config.model_type} model is not a causal language model")
    try:
        causal_lm = transformers.AutoModelForCausalLM.from_pretrained(**location, **loading, dtype="float32",
                                                                      attn_implementation=ATTENTION)
        tok = transformers.AutoTokenizer.from_pretrained(**location)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{model}: cannot be loaded ({_one_line(error)})") from None
    return causal_lm, tok


def _add_delete_token(tok) -> bool:
    """Add the delete token as a special token if the tokenizer lacks it; whether it was added."""
    if DELETE_TOKEN_TEXT in tok.get_vocab():
        return False
    tok.add_tokens([DELETE_TOKEN_TEXT], special_tokens=True)
    return True


def _reply_end(tok) -> int:
    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": REPLY_PROBE}]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    after = rendered.split(REPLY_PROBE, 1)[1] if REPLY_PROBE in rendered else ""
    ids = tok.encode(after, add_special_tokens=False)
    if not ids:
        if tok.eos_token_id is None:
            raise UserError("the chat template ends a reply with nothing, and the tokenizer has no end token")
        return tok.eos_token_id
    return ids[0]


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
