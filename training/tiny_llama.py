"""A llama-architecture transformer in PyTorch, laid out exactly as llama.cpp computes it."""
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class Config:
    n_vocab: int  # tokens in the vocabulary
    n_embd: int = 128  # width of the residual stream
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # query heads
    n_head_kv: int = 4  # key/value heads (fewer than n_head is grouped-query attention)
    n_ff: int = 384  # hidden width of the SwiGLU feed-forward
    context: int = 128  # longest sequence, in tokens
    rope_base: float = 10000.0  # RoPE frequency base (llama.cpp's rope.freq_base)
    norm_eps: float = 1e-5  # RMSNorm epsilon

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(config: Config, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for each position and each pair of dimensions, shape (length, head_dim / 2)."""
    pairs = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
    theta = config.rope_base ** -pairs
    angles = torch.arange(length, dtype=torch.float32)[:, None] * theta[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]): llama.cpp's LLAMA_ROPE_TYPE_NORM, the llama layout.

    Hugging Face's llama rotates halves instead, which is why its converter permutes Q and K; a model
    trained here in the GGUF layout needs no permutation. x is (batch, heads, time, head_dim).
    """
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)


class Attention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        kv = config.n_head_kv * config.head_dim
        self.q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.k = nn.Linear(config.n_embd, kv, bias=False)
        self.v = nn.Linear(config.n_embd, kv, bias=False)
        self.o = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        batch, time, _ = x.shape
        q = self.q(x).view(batch, time, c.n_head, c.head_dim).transpose(1, 2)
        k = self.k(x).view(batch, time, c.n_head_kv, c.head_dim).transpose(1, 2)
        v = self.v(x).view(batch, time, c.n_head_kv, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if c.n_head_kv != c.n_head:  # each key/value head serves a group of query heads
            k = k.repeat_interleave(c.n_head // c.n_head_kv, dim=1)
            v = v.repeat_interleave(c.n_head // c.n_head_kv, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                           scale=1 / math.sqrt(c.head_dim))
        return self.o(y.transpose(1, 2).reshape(batch, time, c.n_embd))


class FeedForward(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.n_ff, bias=False)
        self.up = nn.Linear(config.n_embd, config.n_ff, bias=False)
        self.down = nn.Linear(config.n_ff, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.ffn = FeedForward(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.ffn(self.ffn_norm(x))


class TinyLlama(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.n_vocab, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        self.output = nn.Linear(config.n_embd, config.n_vocab, bias=False)
        cos, sin = rope_tables(config, config.context)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for every position of a (batch, time) tensor of token ids: a causal sequence, or a tree
        of sequences packed together, with each token's position and a (batch, time, time) mask of
        what it may attend to (its own branch: itself and its ancestors)."""
        if positions is None:
            time = tokens.shape[1]
            cos, sin = self.cos[:time], self.sin[:time]
        else:
            cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
            mask = mask[:, None]
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.output(self.norm(x))
