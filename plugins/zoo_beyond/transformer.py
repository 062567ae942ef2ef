"""A small causal character transformer (nanoGPT-style) with a key/value cache for sampling.

Pre-LayerNorm blocks, learned absolute positions, causal self-attention, a tanh-GELU MLP and an output layer tied
to the character embedding. It sees at most `block_size` characters (its `context_length`), predicts the next
character at every position (batching "windows", targets "every") and declares `sampling = "cache"`: zoo samples
it with `init_cache` / `extend` instead of `init_state` / `step`.

`extend` runs in torch on any device. One new position at batch 1 on the CPU in float32, without gradients (what
sampling asks for, once per character), goes to a NumPy kernel instead: torch's per-operation overhead alone caps a
torch step at ~3,800 characters/s on a 2-core CPU, NumPy's lower overhead reaches the 5,000 the sampler aims for.
Only vector-matrix products there: OpenBLAS spreads larger ones over every core whatever torch's thread setting,
which after a torch call on a 2-core machine made them ten times slower (a window's restart stays in torch).
Both read and write the same cache (its NumPy arrays are views of its tensors) and compute the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo import CharModel

LN_EPS = 1e-5  # nn.LayerNorm's default, which the NumPy kernel repeats
GELU_C = math.sqrt(2.0 / math.pi)  # tanh-GELU: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))


@dataclass
class KVCache:
    """The keys and values of the `length` characters extended so far, for every layer: [layers, batch, heads,
    block_size, head_dim] each. `arrays` (NumPy views of k, v and of the model's weights) only where the NumPy
    kernel may run: on the CPU in float32."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0
    arrays: _Arrays | None = field(default=None, repr=False)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of x [batch, length, embd], each [batch, heads, length, head_dim]."""
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        return tuple(a.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for a in (q, k, v))

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """The heads' outputs [batch, heads, length, head_dim] projected back to [batch, length, embd]."""
        b, _, t, _ = y.shape
        y = y.transpose(1, 2).reshape(b, t, -1)
        return F.dropout(self.c_proj(y), self.dropout, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x)
        drop = self.dropout if self.training else 0.0
        return self.merge(F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True))

    def extend(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, start: int) -> torch.Tensor:
        """Attention for the new positions start.. of x over the cached ones; their keys and values go into the
        cache [batch, heads, block_size, head_dim] of this layer."""
        q, k, v = self.qkv(x)
        end = start + x.shape[1]
        k_cache[:, :, start:end] = k
        v_cache[:, :, start:end] = v
        # new position i (absolute start + i) sees the keys 0 .. start + i
        mask = torch.ones(x.shape[1], end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        y = F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end], attn_mask=mask)
        return self.merge(y)


class Mlp(nn.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LayerNorm: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = Mlp(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def extend(self, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, start: int) -> torch.Tensor:
        x = x + self.attn.extend(self.ln_1(x), k_cache, v_cache, start)
        return x + self.mlp(self.ln_2(x))


class CharTransformer(CharModel):
    """nanoGPT for characters: `n_layer` pre-LN blocks of `n_head`-head causal attention over `block_size` positions.

    Declares (zoo.CharModel's capabilities) `sampling = "cache"` and its `context_length`, the block size."""

    sampling = "cache"

    def __init__(
        self, vocab_size: int, n_embd: int = 128, n_head: int = 4, n_layer: int = 2, block_size: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.context_length = block_size  # declared: the most characters one row or one cache holds
        self.n_head, self.n_layer = n_head, n_layer
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self._init_weights()

    def _init_weights(self) -> None:
        """nanoGPT's: normal(0, 0.02), zero biases, and the residual projections scaled down by sqrt(2 n_layer) so
        that the residual stream does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                nn.init.normal_(proj.weight, 0.0, 0.02 / math.sqrt(2 * self.n_layer))

    def _embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        end = start + x.shape[1]
        if end > self.context_length:
            raise ValueError(f"positions up to {end} asked of a transformer with context_length {self.context_length}")
        return self.drop(self.wte(x) + self.wpe(torch.arange(start, end, device=x.device)))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.ln_f(x), self.wte.weight)  # tied: the output layer is the embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, length, vocab]: the next character at every position of x [batch, length]."""
        h = self._embed(x, 0)
        for block in self.blocks:
            h = block(h)
        return self._logits(h)

    def init_cache(self, batch_size: int) -> KVCache:
        """An empty cache for `batch_size` rows, on the model's device."""
        w = self.wte.weight
        head_dim = w.shape[1] // self.n_head
        shape = (self.n_layer, batch_size, self.n_head, self.context_length, head_dim)
        cache = KVCache(w.new_zeros(shape), w.new_zeros(shape))
        if batch_size == 1 and w.device.type == "cpu" and w.dtype == torch.float32:
            cache.arrays = _Arrays(self._folded(), tuple(_np(t[0]) for t in cache.k), tuple(_np(t[0]) for t in cache.v))
        return cache

    def _folded(self) -> _Weights:
        """The weights folded for the NumPy kernel: folded once, again only when a parameter has changed (sampling
        makes a cache every window, and folding costs as much as a few characters)."""
        folded = self.__dict__.get("_folded_weights")
        if folded is None or folded.source != _Weights.source_of(self):
            folded = self.__dict__["_folded_weights"] = _Weights.of(self)
        return folded

    def extend(self, x: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Logits [batch, n, vocab] for the n characters x [batch, n] following the cached ones, and the cache
        holding them too (the same object, updated in place)."""
        start, n = cache.length, x.shape[1]
        if start + n > self.context_length:
            raise ValueError(f"extending a cache of {start} characters by {n} passes the context_length {self.context_length}")
        if cache.arrays is not None and x.shape == (1, 1) and not torch.is_grad_enabled():
            logits = torch.from_numpy(cache.arrays.step(int(x[0, 0]), start).reshape(1, 1, -1))
        else:
            h = self._embed(x, start)
            for layer, block in enumerate(self.blocks):
                h = block.extend(h, cache.k[layer], cache.v[layer], start)
            logits = self._logits(h)
        cache.length = start + n
        return logits, cache


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


@dataclass(frozen=True)
class _Layer:
    """One block's weights for the NumPy kernel, each LayerNorm's gain and bias folded into the product after it
    (ln(x) @ W + b = norm(x) @ (g W) + (beta W + b)) and the attention's 1/sqrt(head_dim) into the queries."""

    attn_w: np.ndarray  # [embd, 3 embd]: queries, keys, values
    attn_b: np.ndarray
    proj_w: np.ndarray  # [embd, embd]
    proj_b: np.ndarray
    fc_w: np.ndarray  # [embd, 4 embd]
    fc_b: np.ndarray
    out_w: np.ndarray  # [4 embd, embd], times the GELU's 0.5
    out_b: np.ndarray

    @classmethod
    def of(cls, block: Block, head_dim: int) -> _Layer:
        a, m = block.attn, block.mlp
        attn_w, attn_b = _fold(block.ln_1, a.c_attn)
        embd = attn_w.shape[0]
        attn_w[:, :embd] *= np.float32(1.0 / math.sqrt(head_dim))
        attn_b[:embd] *= np.float32(1.0 / math.sqrt(head_dim))
        fc_w, fc_b = _fold(block.ln_2, m.c_fc)
        proj_w, out_w = _np(a.c_proj.weight).T.copy(), _np(m.c_proj.weight).T * np.float32(0.5)
        return cls(attn_w, attn_b, proj_w, _np(a.c_proj.bias), fc_w, fc_b, out_w, _np(m.c_proj.bias))


def _fold(norm: nn.LayerNorm, linear: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """(g W.T, beta W.T + b): linear(norm(x)) as normalize(x) @ weight + bias."""
    w_t = _np(linear.weight).T
    return _np(norm.weight)[:, None] * w_t, _np(norm.bias) @ w_t + _np(linear.bias)


@dataclass(frozen=True)
class _Weights:
    """The model's weights folded for the NumPy kernel, and what they were folded from: each parameter's storage
    and version (torch counts in-place changes), so that a trained or reloaded model is folded again."""

    source: tuple[tuple[int, int], ...]
    wte: np.ndarray
    wpe: np.ndarray
    layers: tuple[_Layer, ...]
    out_w: np.ndarray  # [embd, vocab]: ln_f folded into the tied output layer
    out_b: np.ndarray

    @staticmethod
    def source_of(model: CharTransformer) -> tuple[tuple[int, int], ...]:
        return tuple((p.data_ptr(), p._version) for p in model.parameters())

    @classmethod
    def of(cls, model: CharTransformer) -> _Weights:
        head_dim = model.wte.weight.shape[1] // model.n_head
        layers = tuple(_Layer.of(b, head_dim) for b in model.blocks)
        g, beta, wte = _np(model.ln_f.weight), _np(model.ln_f.bias), _np(model.wte.weight)
        return cls(cls.source_of(model), wte, _np(model.wpe.weight), layers, g[:, None] * wte.T, beta @ wte.T)


@dataclass(frozen=True)
class _Arrays:
    """The NumPy kernel for row 0 of a cache: one new character through every layer, its keys and values written
    into the cache (k and v: per layer, [heads, block_size, head_dim] views of the cache's tensors)."""

    weights: _Weights
    k: tuple[np.ndarray, ...]
    v: tuple[np.ndarray, ...]

    def step(self, char: int, pos: int) -> np.ndarray:
        """Logits [vocab] of the character `char` at position `pos`, given the cache's keys and values before it."""
        w = self.weights
        x = w.wte[char] + w.wpe[pos]
        for layer, k, v in zip(w.layers, self.k, self.v):
            x += _attend(layer, k, v, _normalize(x) @ layer.attn_w + layer.attn_b, pos)
            x += _mlp(layer, _normalize(x))
        logits = _normalize(x) @ w.out_w
        logits += w.out_b
        return logits


def _mlp(layer: _Layer, normed: np.ndarray) -> np.ndarray:
    h = normed @ layer.fc_w
    h += layer.fc_b
    out = _gelu2(h) @ layer.out_w
    out += layer.out_b
    return out


def _attend(layer: _Layer, k: np.ndarray, v: np.ndarray, qkv: np.ndarray, pos: int) -> np.ndarray:
    """Attention of the new position `pos` over the cache (queries, keys and values in qkv [3 embd]); its key and
    value are written into the cache first."""
    heads, _, head_dim = k.shape
    qkv = qkv.reshape(3, heads, head_dim)
    k[:, pos] = qkv[1]
    v[:, pos] = qkv[2]
    scores = k[:, : pos + 1] @ qkv[0, :, :, None]  # [heads, pos + 1, 1], the queries already scaled
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    y = scores.transpose(0, 2, 1) @ v[:, : pos + 1]  # [heads, 1, head_dim]
    out = y.reshape(-1) @ layer.proj_w
    out += layer.proj_b
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    """LayerNorm of x [embd] without its gain and bias (folded into the next product), as torch computes it: biased
    variance."""
    centred = x - np.add.reduce(x) / np.float32(x.shape[0])
    centred *= np.float32(1.0 / math.sqrt(float(centred @ centred) / x.shape[0] + LN_EPS))
    return centred


def _gelu2(h: np.ndarray) -> np.ndarray:
    """2 GELU(h), the tanh form, in place (its 0.5 is folded into the next product): h (1 + tanh(c (h + 0.044715 h^3)))."""
    inner = h * h
    inner *= np.float32(GELU_C * 0.044715)
    inner += np.float32(GELU_C)
    inner *= h
    np.tanh(inner, out=inner)
    inner += np.float32(1.0)
    inner *= h
    return inner
