"""Write a TinyLlama's weights and our vocabulary to a GGUF file that llama.cpp runs as a llama."""
from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
from backspace_cli.engine.session import RECOMMENDED_SAMPLING
from backspace_cli.settings import BOUNDS
from backspace_convert import keys

import vocab

EXPORTER_VERSION = "backspace-tiny-export 1"
# What chat's banner and the server's page say about the model; each example it answers right, greedily,
# and the second only after deleting a wrong first guess.
DESCRIPTION = ("A tiny model that knows one thing: which two numbers of a short list (1 to 15) add up to a "
               "target. It writes a guess, checks it, and deletes it if it is wrong.")
EXAMPLES = (
    "Which two of 3 8 5 1 14 add up to 13?",
    "Which two of 12 3 7 5 15 add up to 19?",
    "Pick two of 6 1 7 2 14 that add up to 13.",
)


def export(weights: Mapping[str, np.ndarray], config, path: str | Path, *, name: str = "backspace-tiny",
           sampling: Mapping[str, float] | None = None) -> Path:
    """Write `weights` (a TinyLlama state dict as float32 numpy arrays) and `config` to `path`, with
    `sampling` (temp, top_k, top_p, min_p) as the model's recommended sampling.

    PyTorch's Linear stores (out, in), which is the row-major layout llama.cpp expects, so tensors go
    in as they are; the RoPE layout needs no permutation because TinyLlama rotates adjacent pairs.
    """
    path = Path(path)
    table = vocab.tokens()
    if config.n_vocab != len(table):
        raise ValueError(f"the model has {config.n_vocab} embeddings; the vocabulary has {len(table)}")
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config.context)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.n_ff)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_head_kv)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_base)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(len(table))

    writer.add_tokenizer_model("llama")
    writer.add_token_list([text for text, _ in table])
    writer.add_token_scores([0.0] * len(table))  # single characters: SentencePiece never merges
    writer.add_token_types([kind for _, kind in table])
    writer.add_unk_token_id(vocab.token_id(vocab.UNK))
    writer.add_bos_token_id(vocab.token_id(vocab.BOS))
    writer.add_eos_token_id(vocab.token_id(vocab.EOS))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)  # text round-trips exactly: no invented leading space
    writer.add_chat_template(vocab.CHAT_TEMPLATE)
    for setting, value in (sampling or {}).items():  # under the keys that backspace reads them from
        key, _ = RECOMMENDED_SAMPLING[setting]
        add = writer.add_int32 if BOUNDS[setting].kind is int else writer.add_float32
        add(key, value)

    writer.add_uint32(keys.DELETE_TOKEN_ID, vocab.token_id(vocab.DELETE))
    writer.add_string(keys.DELETE_TOKEN, vocab.DELETE)
    writer.add_string(keys.CONVERTER_VERSION, EXPORTER_VERSION)
    writer.add_string(keys.DESCRIPTION, DESCRIPTION)
    writer.add_string(keys.EXAMPLES, "\n".join(EXAMPLES))

    for gguf_name, torch_name in tensor_names(config.n_layer):
        writer.add_tensor(gguf_name, np.ascontiguousarray(weights[torch_name], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)  # a reader never sees half a file
    return path


def tensor_names(n_layer: int) -> list[tuple[str, str]]:
    """(GGUF name, TinyLlama state-dict name), in the order llama.cpp's own converter writes them."""
    names = [("token_embd.weight", "embed.weight")]
    for i in range(n_layer):
        block = f"blocks.{i}"
        names += [
            (f"blk.{i}.attn_norm.weight", f"{block}.attn_norm.weight"),
            (f"blk.{i}.attn_q.weight", f"{block}.attn.q.weight"),
            (f"blk.{i}.attn_k.weight", f"{block}.attn.k.weight"),
            (f"blk.{i}.attn_v.weight", f"{block}.attn.v.weight"),
            (f"blk.{i}.attn_output.weight", f"{block}.attn.o.weight"),
            (f"blk.{i}.ffn_norm.weight", f"{block}.ffn_norm.weight"),
            (f"blk.{i}.ffn_gate.weight", f"{block}.ffn.gate.weight"),
            (f"blk.{i}.ffn_up.weight", f"{block}.ffn.up.weight"),
            (f"blk.{i}.ffn_down.weight", f"{block}.ffn.down.weight"),
        ]
    names += [("output_norm.weight", "norm.weight"), ("output.weight", "output.weight")]
    return names


def export_model(model, path: str | Path, **options) -> Path:
    """Export a live TinyLlama (torch is only needed here, by the caller's object)."""
    weights = {name: tensor.detach().cpu().float().numpy() for name, tensor in model.state_dict().items()}
    return export(weights, model.config, path, **options)
