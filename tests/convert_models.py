"""GGUF files for the converter tests: tiny llamas in every tensor type, padded and reserved vocabularies,
broken files, and a logits helper that runs real llama.cpp.

Tensors in the types gguf-py can quantize are made with gguf.quants; the K-quants and IQ types, which
gguf-py can only decode, are made with ggml's own quantizer (`ggml_quantize_chunk`, from the libggml
that llama-cpp-python ships), called here directly so the fixtures do not depend on the code under test.
"""
import ctypes
from pathlib import Path

import gguf
import numpy as np

import tiny_models
from backspace_cli.data.hf_tokenizer import byte_level_alphabet
from backspace_cli.engine.model import load_model
from backspace_cli.engine.sequence import CacheSequence

Q = gguf.GGMLQuantizationType
TYPES = [
    Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
    Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
    Q.IQ1_S, Q.IQ1_M, Q.IQ2_XXS, Q.IQ2_XS, Q.IQ2_S, Q.IQ3_XXS, Q.IQ3_S, Q.IQ4_NL, Q.IQ4_XS,
    Q.TQ1_0, Q.TQ2_0, Q.MXFP4,
]
N_EMBD = 256  # a whole K-quant / IQ super-block per row
PROMPT = "the water is made of"
DISTINCT_ROWS = 8


def quantize(values: np.ndarray, qtype: Q) -> np.ndarray:
    """`values` (rows, n) float32 in `qtype`: byte rows for quantized types, float arrays otherwise."""
    if qtype in (Q.F32, Q.F16):
        return gguf.quants.quantize(values, qtype)
    try:
        return gguf.quants.quantize(values, qtype)
    except NotImplementedError:
        pass
    from llama_cpp import _ggml

    lib = _ggml.libggml
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    # ggml's IQ1/IQ2 quantizers search a large grid (about 40 ms a row): quantize a few distinct rows
    # and repeat them, which is all a fixture needs.
    rows, n = values.shape
    values = values[:DISTINCT_ROWS]
    out = np.zeros((len(values), n // block * size), dtype=np.uint8)
    importance = np.ones(n, dtype=np.float32)  # IQ2_XXS, IQ2_XS and IQ1_S need one; the rest accept it
    values = np.ascontiguousarray(values, dtype=np.float32)
    lib.ggml_quantize_chunk(int(qtype), values.ctypes.data, out.ctypes.data, 0, len(values), n, importance.ctypes.data)
    return np.resize(out, (rows, out.shape[1]))


def build_typed(path: Path, qtype: Q, *, tied: bool = False, seed: int = 0) -> Path:
    """A one-layer llama whose token_embd (and output, unless tied) are in `qtype`."""
    rng = np.random.default_rng(seed)
    tokens, scores, types = tiny_models.vocabulary(None)
    n_vocab, n_embd, n_head, n_head_kv = len(tokens), N_EMBD, 4, 2
    head_dim, n_ff = n_embd // n_head, 2 * n_embd
    writer = gguf.GGUFWriter(str(path), "llama")
    tiny_models.write_tokenizer(writer, tokens, scores, types)
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)

    def weight(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def typed(name, values):
        data = quantize(values, qtype)
        writer.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)

    typed("token_embd.weight", weight(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    if not tied:
        typed("output.weight", weight(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.attn_k.weight", weight(n_head_kv * head_dim, n_embd))
    writer.add_tensor("blk.0.attn_v.weight", weight(n_head_kv * head_dim, n_embd))
    writer.add_tensor("blk.0.attn_output.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    tiny_models.write(writer)
    return path


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_MERGES = ["Ġ t", "Ġ w", "h e", "Ġt he", "a t", "Ġw at", "e r", "Ġwat er"]
QWEN_PADDED_VOCAB = 320  # the embedding rows: the tokenizer has fewer tokens, padded with [PADn]


def build_qwen_padded(path: Path, seed: int = 0) -> Path:
    """A Qwen-style GGUF: a byte-level BPE tokenizer whose vocabulary is padded up to the embedding's
    row count with `[PAD{id}]` tokens of type UNUSED, as llama.cpp's convert_hf_to_gguf.py writes them."""
    rng = np.random.default_rng(seed)
    T = gguf.TokenType
    tokens = list(byte_level_alphabet().values())
    tokens += ["".join(merge.split()) for merge in QWEN_MERGES]
    types = [T.NORMAL] * len(tokens)
    for special in QWEN_SPECIALS:
        tokens.append(special), types.append(T.CONTROL)
    while len(tokens) < QWEN_PADDED_VOCAB:
        tokens.append(f"[PAD{len(tokens)}]"), types.append(T.UNUSED)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(QWEN_MERGES)
    eos = tokens.index("<|im_end|>")
    writer.add_eos_token_id(eos)
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    n_embd, n_head, n_head_kv, n_ff = 64, 4, 2, 128
    head_dim = n_embd // n_head
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)

    def weight(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    n_vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weight(n_vocab, n_embd, scale=1.0).astype(np.float16))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, n_embd, scale=1.0).astype(np.float16))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    for name, rows in (("q", n_embd), ("k", n_head_kv * head_dim), ("v", n_head_kv * head_dim)):
        writer.add_tensor(f"blk.0.attn_{name}.weight", weight(rows, n_embd))
        writer.add_tensor(f"blk.0.attn_{name}.bias", weight(rows))
    writer.add_tensor("blk.0.attn_output.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    tiny_models.write(writer)
    return path


RESERVED = [f"<|reserved_special_token_{i}|>" for i in range(8)]


def build_reserved(path: Path) -> Path:
    """A tiny llama whose vocabulary ends with Llama-3-style reserved special tokens."""
    tokens, scores, types = tiny_models.vocabulary(None)
    tokens += RESERVED
    scores += [0.0] * len(RESERVED)
    types += [gguf.TokenType.CONTROL] * len(RESERVED)
    return build_plain(path, tokens, scores, types)


def build_plain(path: Path, tokens, scores, types, *, embedding_rows: int | None = None, arch: str = "llama",
                tokenizer: bool = True, extra: dict | None = None) -> Path:
    """A one-layer F32 llama over the given vocabulary; `embedding_rows` can make the shapes disagree."""
    rng = np.random.default_rng(0)
    n_embd, n_ff = 64, 128
    writer = gguf.GGUFWriter(str(path), arch)
    if tokenizer:
        tiny_models.write_tokenizer(writer, tokens, scores, types)
    for key, value in (extra or {}).items():
        writer.add_key_value(key, value[0], value[1])
    writer.add_context_length(256)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(16)
    writer.add_layer_norm_rms_eps(1e-5)
    rows = embedding_rows if embedding_rows is not None else len(tokens)

    def weight(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(rows, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weight(rows, n_embd, scale=1.0))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.attn_k.weight", weight(32, n_embd))
    writer.add_tensor("blk.0.attn_v.weight", weight(32, n_embd))
    writer.add_tensor("blk.0.attn_output.weight", weight(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", weight(n_ff, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", weight(n_embd, n_ff))
    tiny_models.write(writer)
    return path


def logits(path: Path, prompt: list[int], n_vocab: int) -> np.ndarray:
    """The logits after `prompt`, decoded as one batch by llama.cpp; the first `n_vocab` of them."""
    model = load_model(path, n_ctx=128, n_threads=1)  # one thread: the CI machine is shared
    try:
        sequence = CacheSequence(model, batch_size=len(prompt))
        values = sequence.feed(prompt)[:n_vocab].copy()
        del sequence
    finally:
        model.llama.close()
    return values


def prompt_ids(path: Path) -> list[int]:
    model = load_model(path, n_ctx=128, n_threads=1)
    try:
        return model.tokenize(PROMPT, add_bos=True, special=False)
    finally:
        model.llama.close()


def assert_bit_identical(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    differ = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert differ.size == 0, f"{differ.size} logits differ, first at token {differ[:5]}"
