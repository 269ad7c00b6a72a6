"""Tiny random-weight GGUF models for the tests, written with gguf.GGUFWriter: a llama, a Gemma 3, a Mamba
and an LFM2 hybrid."""
from pathlib import Path

import gguf
import numpy as np

DELETE = "<|delete|>"
# A SentencePiece-style vocabulary: specials, the delete token, byte fallback, then characters.
SPECIALS = ["<unk>", "<s>", "</s>"]
CHARACTERS = ["▁"] + list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()")
WORDS = ["▁the", "▁is", "▁of", "▁made", "▁water", "th", "he", "in", "er", "an", "▁t", "▁w", "▁m"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def vocabulary(delete_token: str | None) -> tuple[list[str], list[float], list[int]]:
    T = gguf.TokenType
    tokens, scores, types = [], [], []
    for text in SPECIALS:
        tokens.append(text), scores.append(0.0), types.append(T.CONTROL)
    if delete_token is not None:
        tokens.append(delete_token), scores.append(0.0), types.append(T.CONTROL)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>"), scores.append(0.0), types.append(T.BYTE)
    for rank, text in enumerate(CHARACTERS + WORDS):
        tokens.append(text), scores.append(-float(rank) if len(text) == 1 else 1.0), types.append(T.NORMAL)
    return tokens, scores, types


def write_tokenizer(writer: gguf.GGUFWriter, tokens: list[str], scores: list[float], types: list[int]) -> None:
    """A SentencePiece-style tokenizer with <unk>, <s> and </s> at ids 0, 1 and 2."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)


def _tokenizer(writer: gguf.GGUFWriter, delete_token: str | None, chat_template: str | None) -> int:
    tokens, scores, types = vocabulary(delete_token)
    write_tokenizer(writer, tokens, scores, types)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    return len(tokens)


def build_llama(
    path: Path,
    *,
    delete_token: str | None = DELETE,
    chat_template: str | None = CHAT_TEMPLATE,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    context: int = 512,
    seed: int = 0,
    recommended_temp: float | str | None = None,  # a string writes the key with the wrong type
    tokenizer=None,  # writer -> n_vocab: another tokenizer than the SentencePiece one (delete_token unused)
) -> Path:
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    n_vocab = tokenizer(writer) if tokenizer else _tokenizer(writer, delete_token, chat_template)
    if isinstance(recommended_temp, str):
        writer.add_string(gguf.Keys.General.SAMPLING_TEMP, recommended_temp)
    elif recommended_temp is not None:
        writer.add_float32(gguf.Keys.General.SAMPLING_TEMP, recommended_temp)
    head_dim = n_embd // n_head
    n_ff = 2 * n_embd
    writer.add_context_length(context)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    # A large output scale makes the distribution peaked, so sampling has clear favourites.
    writer.add_tensor("output.weight", weight(n_vocab, n_embd, scale=1.0))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    write(writer)
    return path


def build_gemma3(path: Path, *, n_embd: int = 64, n_layer: int = 2, sliding_window: int = 8, seed: int = 0) -> Path:
    """Gemma 3's interleaved sliding-window cache, with a window short enough for tests to cross."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "gemma3")
    n_vocab = _tokenizer(writer, DELETE, CHAT_TEMPLATE)
    n_head, n_head_kv, head_dim, n_ff = 4, 1, 16, 2 * n_embd
    writer.add_context_length(512)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_sliding_window(sliding_window)
    writer.add_layer_norm_rms_eps(1e-6)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))  # tied: no output.weight
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        for norm, size in [("attn_norm", n_embd), ("post_attention_norm", n_embd), ("ffn_norm", n_embd),
                           ("post_ffw_norm", n_embd), ("attn_q_norm", head_dim), ("attn_k_norm", head_dim)]:
            writer.add_tensor(f"blk.{i}.{norm}.weight", np.ones(size, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_head * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
    write(writer)
    return path


def build_mamba(path: Path, *, n_embd: int = 64, n_layer: int = 2, seed: int = 0) -> Path:
    """A recurrent model: llama_memory_seq_rm cannot drop a suffix of its state."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "mamba")
    n_vocab = _tokenizer(writer, DELETE, CHAT_TEMPLATE)
    d_inner, d_state, d_conv, dt_rank = 2 * n_embd, 16, 4, max(1, n_embd // 16)
    writer.add_context_length(1024)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(0)
    writer.add_head_count(0)
    writer.add_ssm_conv_kernel(d_conv)
    writer.add_ssm_inner_size(d_inner)
    writer.add_ssm_state_size(d_state)
    writer.add_ssm_time_step_rank(dt_rank)
    writer.add_layer_norm_rms_eps(1e-5)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, n_embd, scale=1.0))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ssm_in.weight", weight(2 * d_inner, n_embd))
        writer.add_tensor(f"blk.{i}.ssm_conv1d.weight", weight(d_inner, d_conv))
        writer.add_tensor(f"blk.{i}.ssm_conv1d.bias", weight(d_inner))
        writer.add_tensor(f"blk.{i}.ssm_x.weight", weight(dt_rank + 2 * d_state, d_inner))
        writer.add_tensor(f"blk.{i}.ssm_dt.weight", weight(d_inner, dt_rank))
        writer.add_tensor(f"blk.{i}.ssm_dt.bias", weight(d_inner))
        # A = -exp(A_log) is negative, so the state decays as in a trained Mamba.
        writer.add_tensor(f"blk.{i}.ssm_a", -np.exp(weight(d_inner, d_state, scale=0.5)))
        writer.add_tensor(f"blk.{i}.ssm_d", np.ones(d_inner, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ssm_out.weight", weight(n_embd, d_inner))
    write(writer)
    return path


def build_lfm2(path: Path, *, n_embd: int = 64, layers: str = "cacc", seed: int = 0) -> Path:
    """A hybrid: LFM2's short-convolution layers ("c", recurrent state) and attention layers ("a"), an
    architecture whose recurrent state llama.cpp can roll back (llm_arch_supports_rs_rollback)."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "lfm2")
    n_vocab = _tokenizer(writer, DELETE, CHAT_TEMPLATE)
    n_head, n_head_kv, n_ff, l_cache = 4, 2, 2 * n_embd, 3
    head_dim = n_embd // n_head
    writer.add_context_length(1024)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(len(layers))
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv([n_head_kv if kind == "a" else 0 for kind in layers])  # 0: a recurrent layer
    writer.add_shortconv_l_cache(l_cache)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))  # tied: no output.weight
    writer.add_tensor("token_embd_norm.weight", np.ones(n_embd, dtype=np.float32))  # LFM2's output norm
    for i, kind in enumerate(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(n_embd, n_ff))
        if kind == "a":
            writer.add_tensor(f"blk.{i}.attn_q_norm.weight", np.ones(head_dim, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.attn_k_norm.weight", np.ones(head_dim, dtype=np.float32))
            writer.add_tensor(f"blk.{i}.attn_q.weight", weight(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
            writer.add_tensor(f"blk.{i}.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
            writer.add_tensor(f"blk.{i}.attn_output.weight", weight(n_embd, n_embd))
        else:
            writer.add_tensor(f"blk.{i}.shortconv.conv.weight", weight(n_embd, l_cache, scale=0.5))
            writer.add_tensor(f"blk.{i}.shortconv.in_proj.weight", weight(3 * n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.shortconv.out_proj.weight", weight(n_embd, n_embd))
    write(writer)
    return path


def write(writer: gguf.GGUFWriter) -> None:
    """Header, key-values, then tensors: the order a GGUF file holds them in."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
