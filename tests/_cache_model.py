import torch
import torch.nn.functional as F
from torch import nn

import zoo


class TinyCausalTransformer(zoo.CharModel):
    """One pre-LayerNorm attention block over learned positions, sampled through a key/value cache."""

    sampling = "cache"

    def __init__(self, vocab_size: int, n_embd: int = 32, n_head: int = 2, context: int = 16) -> None:
        super().__init__()
        self.context_length = context  # the learned positions: the most characters a row or a cache holds
        self.n_head = n_head
        self.tok, self.pos = nn.Embedding(vocab_size, n_embd), nn.Embedding(context, n_embd)
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.qkv, self.proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.head = nn.Linear(n_embd, vocab_size)

    def init_cache(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        empty = self.head.weight.new_zeros(batch_size, self.n_head, 0, self.head.in_features // self.n_head)
        return empty, empty  # the keys and values of the characters so far: none

    def extend(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple]:
        k_old, v_old = cache
        (b, n), m = x.shape, k_old.shape[2]  # n new characters after the m in the cache
        h = self.tok(x) + self.pos(torch.arange(m, m + n, device=x.device))
        q, k, v = (t.view(b, n, self.n_head, -1).transpose(1, 2) for t in self.qkv(self.ln1(h)).chunk(3, -1))
        k, v = torch.cat([k_old, k], 2), torch.cat([v_old, v], 2)
        sees = torch.ones(n, m + n, dtype=torch.bool, device=x.device).tril(m)  # new character i sees 0 .. m + i
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=sees)
        h = h + self.proj(a.transpose(1, 2).reshape(b, n, -1))
        h = h + self.mlp(self.ln2(h))
        return self.head(h), (k, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # targets "every": [batch, length, V]
        logits, _ = self.extend(x, self.init_cache(x.shape[0]))
        return logits
