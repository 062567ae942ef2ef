"""Sampling text one character at a time: step models carry the hidden state forward, cache models extend a cache.

How a model is sampled is declared (`zoo.model.capabilities(model).sampling`): "step" models (the default, the
lesson's RNNs) by the loops below; "cache" models (e.g. attention with a key/value cache) by `_sample_cached`.

Step models.

The lesson's `get_next` re-ran the model over the last `context` characters for every
new character. Here each window's state is advanced once per character instead: the
sampler keeps one state per window that is still filling, steps them together as one batch,
and predicts from the one that has just seen `context` characters. That is exactly the
lesson's prediction, at a fraction of the cost.
Models trained on contiguous streams (context None) carry a single state indefinitely.

Two loops implement this:

- `_sample_fused`, for models with a fused form (`model.fused()`, see `zoo.model.FusedRnn`)
  on the CPU: the step is one table row plus one small matrix product, so at batch 1 the
  cost is mostly per-operation overhead, and NumPy's is a few times lower than torch's:
  for char-rnn at temperature 0.8 on one core, 47-58k chars/s against 12-14k for the same
  loop in torch (`bench/perf.py`). About half of its ~17 us per character is the [6, 256] @
  [256, 256] product (of the 7 windows alive, the newest is a table row), which is why it
  cannot go much faster with exact windows.
- `_sample_stepping`, for every other model and device: the model's own `step()` (or its
  fused form in torch), on whatever device the model lives.

Both choose characters with the same rule, `pick()` (`_pick_np` in NumPy): the Gumbel-max trick,
argmax(logits / temperature + Gumbel noise), which draws from softmax(logits / temperature)
exactly, with the noise from the seeded generator in a fixed order, so the same seed gives the
same text whichever loop runs (tests/test_sampling.py compares both with re-running the window).
It is an argmax and an add where a softmax, a cumulative sum and a search were: the cheapest
exact draw per character.

Cache models. The window W is the training context (the batching length), at most the model's declared
context_length. Each prediction sees the characters since the current window start: the cache starts with the
prompt's last min(len(prompt), W) characters, extended in one call; after each drawn character, if the window
would hold more than W characters it restarts from the last max(1, W // 2) characters (a new cache, extended with
them in one call), else the drawn character alone is extended. So every prediction sees between max(1, W // 2) and
W characters (fewer only while prompt and text are shorter): per character one extend of one position, or of
max(1, W // 2) positions at a restart, once every W - max(1, W // 2) + 1 characters. Characters are chosen as above
(`_pick_np` on the CPU, `_pick` elsewhere, the same noise in the same order). `sample_uncached` follows the same
window rule with forward() over the whole window for every character: the same seed gives the same text, which is
how tests/test_sampling_cache.py checks a model's cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo import checks
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.model import Capabilities, FusedRnn, capabilities


def check_prompt(vocab: Vocab, prompt: str) -> list[int]:
    if not prompt:
        raise ZooError("the prompt is empty; give at least one character with --prompt")
    if "\0" in prompt:  # index 0: the padding the models never saw as input text
        raise ZooError("the prompt contains '\\0', zoo's padding character, which no text has")
    unknown = vocab.unknown(prompt)
    if unknown:
        shown = " ".join(repr(c) for c in unknown[:5])
        raise ZooError(f"the prompt has characters the model's vocabulary lacks: {shown} (the vocabulary has {len(vocab)} characters)")
    return vocab.encode(prompt)


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise from uniform numbers in [0, 1): -log(-log(u))."""
    return u.log_().neg_().log_().neg_()


class Noise:
    """The Gumbel noise of every draw, [n, vocab] a step, from `generator` in a fixed order.

    Drawn a block of steps at a time: torch's CPU generator fills a tensor serially, so blocks
    give exactly the numbers that one draw per step (as `pick` makes) gives, without holding
    length x n x vocab numbers at once.
    """

    BLOCK = 1024  # steps at most
    BLOCK_NUMBERS = 2**22  # numbers at most, unless one step needs more: many samples of a large vocabulary

    def __init__(self, generator: torch.Generator | None, length: int, n: int, vocab: int) -> None:
        self.generator, self.length, self.n, self.vocab = generator, length, n, vocab
        self.start, self.block = 0, torch.empty(0, n, vocab)
        self.steps = max(1, min(self.BLOCK, self.BLOCK_NUMBERS // (n * vocab)))

    def block_for(self, k: int) -> tuple[int, torch.Tensor]:
        """(first step, noise [steps, n, vocab]) of the block that holds step k; steps are asked for in order."""
        if k >= self.start + len(self.block):
            self.start = k
            size = min(self.steps, self.length - k)
            self.block = gumbel(torch.rand(size, self.n, self.vocab, generator=self.generator))
        return self.start, self.block

    def at(self, k: int) -> torch.Tensor:
        """Step k's noise, [n, vocab]."""
        start, block = self.block_for(k)
        return block[k - start]


# Characters in one call: each costs 8 bytes as an id, 8 more in the list handed back and 1-4 in its text, so
# 10**7 stay under 200 MB (10**9 took over 20 GB).
MAX_CHARS = 10**7
MAX_SAMPLES = 1000  # samples drawn at once: each holds a state per window and a row of noise per step
MAX_STEP_NUMBERS = 2**22  # samples x vocabulary: the logits and noise of one step (16 MiB each)
MIN_FOLDED_TEMPERATURE = 1e-4  # the fused loop's logits, scaled by at most 1e4, stay far from float32's range
STREAM_STEPS = 256  # characters handed to `on_text` at a time: often enough to watch, rarely enough to cost nothing


@dataclass(frozen=True)
class Draw:
    """How each character is chosen: the temperature (0 greedy), top-k or None, and the noise (None when greedy)."""

    temperature: float
    top_k: int | None
    noise: Noise | None


def check_weights(model: nn.Module) -> None:
    """A model whose weights hold nan or inf has no probabilities to sample from (its training diverged, or the
    file was edited): one line, before anything is printed."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ZooError("the model's weights are not all finite numbers (nan or inf); it cannot be sampled")


def _refuse_non_finite() -> None:
    raise ZooError("the model's probabilities are not finite numbers (its logits overflowed to nan or inf); nothing more can be sampled")


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """Next character ids [batch] from logits [batch, vocab]; the \\0 padding is never chosen.

    The Gumbel-max trick: argmax(logits / temperature + g), g Gumbel noise per row and
    character, draws from softmax(logits / temperature) exactly. Greedy (temperature 0)
    draws no random number.
    """
    g = gumbel(torch.rand(logits.shape, generator=generator)) if temperature > 0 else None
    return _pick(logits, temperature, top_k, g)


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, g: torch.Tensor | None) -> torch.Tensor:
    """pick() with its noise `g` [batch, vocab] (on the CPU) drawn beforehand. `_pick_np` is the same rule in NumPy."""
    logits = logits.float().clone()
    logits[:, 0] = float("-inf")
    if temperature <= 0:
        return logits.argmax(-1)
    # Shifted so the largest is 0 (the softmax is the same): a tiny temperature then sends the others to -inf,
    # never the largest to inf, which would tie with others or give nan.
    logits -= logits.max(-1, keepdim=True).values
    logits /= temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits.masked_fill_(logits < kth, float("-inf"))
    return (logits + g.to(logits.device)).argmax(-1)


def _pick_np(logits: np.ndarray, temperature: float, top_k: int | None, g: Any) -> Any:
    """`_pick` in NumPy, the same float32 steps: logits [n, vocab] (or [vocab] for one row) are overwritten; g alike."""
    logits[..., 0] = -np.inf
    if temperature <= 0:
        return logits.argmax(-1)
    logits -= logits.max(-1, keepdims=True)  # as `_pick` does
    with np.errstate(over="ignore"):  # a tiny temperature: the others go to -inf, as they should
        logits /= np.float32(temperature)
    vocab = logits.shape[-1]
    if top_k is not None and 0 < top_k < vocab:
        kth = np.partition(logits, vocab - top_k, axis=-1)[..., vocab - top_k, None]  # the k-th largest, topk's last value
        logits[logits < kth] = -np.inf
    logits += g
    return int(logits.argmax()) if logits.ndim == 1 else logits.argmax(-1)


class _Fused:
    """A model's `FusedRnn` with the step interface: one lookup, one matrix product per character.

    The sampler's loop on devices other than the CPU steps with it; zoo.testing checks it
    against forward() (a wrong fused() is caught there).
    """

    def __init__(self, f: Any) -> None:
        self.table = f.table.contiguous()
        self.w_hh_t = f.w_hh.t().contiguous()
        self.w_out_t = f.w_out.t().contiguous()
        self.b_out = f.b_out
        self.act = torch.tanh_ if f.act == "tanh" else torch.relu_

    def init_state(self, n: int) -> torch.Tensor:
        return self.table.new_zeros(n, self.table.shape[1])

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(torch.addmm(self.table[x], h, self.w_hh_t))
        return torch.addmm(self.b_out, h, self.w_out_t), h


def _fused_form(model: nn.Module) -> Any:
    fused = getattr(model, "fused", None)
    return fused() if callable(fused) else None


def stepper(model: nn.Module) -> Any:
    """The fastest exact way to step `model` in torch: its fused form if it has one, else its own step()."""
    f = _fused_form(model)
    return _Fused(f) if f is not None else model


@torch.inference_mode()
def sample(
    model: nn.Module,
    vocab: Vocab,
    prompt: str,
    length: int = 400,
    *,
    context: int | None,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int | None = None,
    num_samples: int = 1,
    on_text: Callable[[str], None] | None = None,
) -> list[str]:
    """`num_samples` continuations of `prompt`, `length` characters each (prompt not included).

    `on_text`, with one sample, is handed the text as it is drawn, `STREAM_STEPS` characters at a time (what
    `zoo sample` prints as it goes).
    """
    if not isinstance(prompt, str):
        raise ZooError(f"the prompt must be a string, got {prompt!r}")
    length = checks.whole("--length", length)
    if length < 0:
        raise ZooError("--length must be zero or more")
    num_samples = checks.whole("--num-samples", num_samples)
    if num_samples < 1:
        raise ZooError("--num-samples must be at least 1")
    most = min(MAX_SAMPLES, max(1, MAX_STEP_NUMBERS // len(vocab)))
    if num_samples > most:
        of_vocab = f" for a vocabulary of {len(vocab):,} characters" if most < MAX_SAMPLES else ""
        raise ZooError(f"--num-samples must be at most {most:,}{of_vocab}, got {num_samples:,}")
    if on_text is not None and num_samples != 1:
        raise ZooError("only one sample at a time can be streamed")
    temperature = checks.temperature(temperature)
    if np.float32(temperature) == 0:  # below float32's smallest number: 1 / T is no number at all; the limit is greedy
        temperature = 0.0
    if length * num_samples > MAX_CHARS:
        raise ZooError(f"--length x --num-samples is {length * num_samples:,} characters; zoo samples at most {MAX_CHARS:,} at once")
    # a top-k below 1 used to be ignored silently; the CLI refuses it too
    top_k = None if top_k is None else checks.whole("--top-k", top_k, 1)
    seed = None if seed is None else checks.whole("--seed", seed, -(2**63), 2**64 - 1)  # torch.Generator's range
    ids = check_prompt(vocab, prompt)
    caps = capabilities(model)
    if caps.sampling == "cache":
        context = cache_window(caps, context)
    if length == 0:
        return [""] * num_samples
    model.eval()
    check_weights(model)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    noise = Noise(generator, length, num_samples, len(vocab)) if temperature > 0 else None  # greedy draws nothing
    draw = Draw(temperature, top_k, noise)
    on_ids = (lambda new: on_text(vocab.decode(new))) if on_text is not None else None
    if caps.sampling == "cache":
        device = next(model.parameters()).device
        with np.errstate(over="ignore", invalid="ignore"):  # logits that overflow are refused, in one line
            chars = _sample_cached(model, ids, length, context, draw, num_samples, device, on_ids)
        return [vocab.decode(row) for row in chars]
    f = _fused_form(model)
    if f is not None and f.table.device.type == "cpu" and f.table.dtype == torch.float32:
        with np.errstate(over="ignore", invalid="ignore"):  # logits that overflow are refused, in one line, below
            chars = _sample_fused(f, ids, length, context, draw, num_samples, on_ids)
    else:
        device = next(model.parameters()).device
        chars = _sample_stepping(stepper(model), ids, length, context, draw, num_samples, device, on_ids)
    return [vocab.decode(row) for row in chars]


# NumPy's matmul costs the least per call (~10 us for the lesson models' 8 x 256 x 256 step at batch 1,
# torch.mm ~19 us), and OpenBLAS runs a product that small on one thread. Larger products it spreads
# over every core whatever torch's setting, which on a busy 2-core machine made them up to 5x slower
# than torch.mm on one thread; so those go to torch.mm, on the same memory.
_NUMPY_MATMUL_MAX = 8 * 256 * 256  # m * k * n


def _matmul(a: np.ndarray, b: np.ndarray, *, out: np.ndarray) -> None:
    """out = a @ b, for a [m, k] or [k] (one row)."""
    if (a.shape[0] if a.ndim == 2 else 1) * b.size <= _NUMPY_MATMUL_MAX:
        np.matmul(a, b, out=out)
    else:
        torch.matmul(torch.from_numpy(a), torch.from_numpy(b), out=torch.from_numpy(out))


def _oldest(i: int, context: int | None) -> int:
    """The ring slot of the oldest window after step i: the one started at step max(0, i - context + 1)."""
    return (i + 1) % context if context is not None and i + 1 >= context else 0


def _sample_fused(
    f: FusedRnn,
    ids: list[int],
    length: int,
    context: int | None,
    draw: Draw,
    n: int,
    on_ids: Callable[[list[int]], None] | None = None,
) -> list[list[int]]:
    """The CPU loop for fused models, in NumPy: per character one small matrix product and a few vector ops.

    With a window of `context` characters, each prediction re-runs the model over the last
    `context` characters from a zero state (what the model was trained on), so context - 1
    windows are alive at once, each a slot of n rows (one per sample), oldest first. A step
    advances every window by the character, starts a new one and retires the oldest after its
    prediction. Only windows that have seen two characters or more need the [H, H] product: a
    window's first state is a row of act(table), so the product the next step needs from it is
    a row of act(table) @ w_hh.T (`first_prod`), looked up; the state itself is never stored.
    That is 2 of `context` rows fewer in the product that dominates a step. The slots of a step
    are written to the other buffer shifted by one, so retiring the oldest copies nothing.
    Without a window (context None) one slot carries the state from character to character.

    Every `STREAM_STEPS` characters, and at the end, the logits of the characters drawn are checked finite (NumPy's
    argmax takes a nan or an inf wherever one is, so a drawn one is seen) and the first sample's are handed to
    `on_ids`.
    """
    temperature, top_k, noise = draw.temperature, draw.top_k, draw.noise
    table = f.table.detach().numpy()
    w_hh_t = np.ascontiguousarray(f.w_hh.detach().numpy().T)
    w_out_t = np.array(f.w_out.detach().numpy().T, order="C")  # a copy, always: it may be scaled in place below
    b_out = f.b_out.detach().numpy().copy()
    b_out[0] = -np.inf  # as _pick_np does to the logits
    # Gumbel-max without top-k picks argmax(h @ w_out.T / T + b_out / T + g): the temperature is folded into
    # the output layer once, and b_out / T into each block of noise, so a character costs one add, not three.
    # Folded only where 1 / T cannot overflow the logits; below, each draw shifts its logits first (`_pick_np`).
    folded = noise is not None and top_k is None and temperature >= MIN_FOLDED_TEMPERATURE
    if folded:
        w_out_t /= np.float32(temperature)
        b_out /= np.float32(temperature)
    relu = f.act == "relu"
    vocab, hidden = table.shape
    act_table = np.maximum(table, 0.0) if relu else np.tanh(table)
    carry = context is None  # one state per sample carried from character to character, else windows
    slots = 1 if carry else max(1, context - 1)  # the windows alive between steps, except the newest
    multiplied = 1 if carry else max(0, context - 2)  # the slots that need the [H, H] product
    # Row c: the product of a window's first state, act(table[c]) @ w_hh.T. Row `vocab` (where x_prev
    # starts), and every row for windows of one character: zeros, the product of a zero state.
    first_prod = np.zeros((vocab + 1, hidden), np.float32)
    if context != 1:
        np.matmul(act_table, w_hh_t, out=first_prod[:vocab])
    bufs = [np.zeros((slots, n, hidden), np.float32) for _ in range(2)]
    logits = np.empty(vocab if n == 1 else (n, vocab), np.float32)
    out = np.empty((length, n), np.int64)
    drawn = np.empty(STREAM_STEPS if n == 1 else (STREAM_STEPS, n), np.float32)  # each drawn character's logit
    every_row = np.arange(n)
    flushed, last = 0, min(length, STREAM_STEPS) - 1  # characters handed on so far; the step that hands on the next
    g_start = g_end = 0
    g_block = np.empty((0, vocab), np.float32)
    x_prev: Any = vocab if n == 1 else np.full(n, vocab)
    skip = len(ids) - 1  # steps that only read the prompt
    # Per character the loop is mostly per-call overhead, so what can be is decided once.
    step_matmul = np.matmul if multiplied * n * hidden * hidden <= _NUMPY_MATMUL_MAX else _matmul
    out_matmul = np.matmul if n * hidden * vocab <= _NUMPY_MATMUL_MAX else _matmul
    flat = [b.reshape(slots * n, hidden) for b in bufs]
    rows = multiplied * n
    which, x_next = 0, None
    for i in range(skip + length):
        x: Any = ids[i] if i <= skip else x_next
        if n > 1 and i <= skip:
            x = np.full(n, x)
        which ^= 1
        dst = bufs[which]
        if multiplied:  # slot j of this step is slot j + 1 of the last (windows): the oldest retired
            src = flat[which ^ 1] if carry else flat[which ^ 1][n : n + rows]
            step_matmul(src, w_hh_t, out=flat[which][:rows])
        if not carry:
            dst[slots - 1] = first_prod[x_prev]  # the window that started with the previous character
        dst += table[x]  # the input term: a table row, the same for every window of a sample
        if relu:
            np.maximum(dst, 0.0, out=dst)
        else:
            np.tanh(dst, out=dst)
        x_prev = x
        k = i - skip
        if k < 0:
            continue
        out_matmul(dst[0, 0] if n == 1 else dst[0], w_out_t, out=logits)  # the oldest window's prediction
        if noise is not None and k >= g_end:  # the next block of noise, as NumPy rows (plus the bias, folded)
            g_start, block = noise.block_for(k)
            g_block = block.numpy()[:, 0] if n == 1 else block.numpy()
            g_block = g_block + b_out if folded else g_block
            g_end = g_start + len(g_block)
        if folded:
            logits += g_block[k - g_start]  # its \0 entry is -inf: the padding is never chosen
            x_next = logits.argmax(-1)
        else:
            logits += b_out
            x_next = logits.argmax(-1) if noise is None else _pick_np(logits, temperature, top_k, g_block[k - g_start])
        out[k] = x_next
        drawn[k - flushed] = logits[x_next] if n == 1 else logits[every_row, x_next]
        if k == last:
            if not np.isfinite(drawn[: k + 1 - flushed]).all():
                _refuse_non_finite()
            if on_ids is not None:
                on_ids(out[flushed : k + 1, 0].tolist())
            flushed, last = k + 1, min(length, k + 1 + STREAM_STEPS) - 1
    return out.T.tolist()


def _sample_stepping(
    model: Any,
    ids: list[int],
    length: int,
    context: int | None,
    draw: Draw,
    n: int,
    device: torch.device,
    on_ids: Callable[[list[int]], None] | None = None,
) -> list[list[int]]:
    """The general loop, in torch on the model's device: a ring of `context` windows (slot i % context starts at
    step i), every window stepped with the model's step(), the oldest one's logits picked from. As `_sample_fused`,
    the logits are checked finite and the first sample handed to `on_ids` every `STREAM_STEPS` characters (a flag
    kept on the device meanwhile: no wait for the GPU per character)."""
    temperature, top_k, noise = draw.temperature, draw.top_k, draw.noise
    slots = context or 1
    fresh = _map(lambda t: t.repeat(slots, *[1] * (t.dim() - 1)), model.init_state(n))  # every row's initial state
    state = fresh
    slot_of_row = torch.arange(slots, device=device).repeat_interleave(n)
    starting = slot_of_row[None] == torch.arange(slots, device=device)[:, None]  # [slot, row]: the rows of slot s
    x = torch.full((slots, n), ids[0], dtype=torch.long, device=device)  # each window sees its sample's character
    out = torch.empty(length, n, dtype=torch.long, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    flushed, last = 0, min(length, STREAM_STEPS) - 1
    skip = len(ids) - 1
    for i in range(skip + length):
        if context is not None:
            state = _restart(state, fresh, starting[i % context])  # the windows that start with this character
        logits, state = model.step(x.view(-1), state)  # logits for every window: step() has no cheaper form
        k = i - skip
        if k < 0:
            x.fill_(ids[i + 1])
            continue
        o = _oldest(i, context)
        oldest = logits[o * n : o * n + n]
        finite &= torch.isfinite(oldest.amax())  # the max is nan if any is, inf if any is
        nxt = _pick(oldest, temperature, top_k, noise.at(k) if noise is not None else None)
        x.copy_(nxt.expand(slots, n))
        out[k] = nxt
        if k == last:
            if not bool(finite):
                _refuse_non_finite()
            if on_ids is not None:
                on_ids(out[flushed : k + 1, 0].tolist())
            flushed, last = k + 1, min(length, k + 1 + STREAM_STEPS) - 1
    return out.T.tolist()


def cache_window(caps: Capabilities, context: int | None) -> int:
    """The window W a cache model samples within: its training context, which its cache must be able to hold."""
    if context is None:
        raise ZooError('a model with sampling = "cache" samples within a window, but this one was trained on streams (no window)')
    if context > caps.context_length:
        raise ZooError(
            f"the model was trained on windows of {context} characters, more than its context_length {caps.context_length}; "
            "its cache cannot hold a window (was config.json edited?)"
        )
    return context


def _extend(model: Any, x: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """model.extend(x, cache), its result checked: a wrong one is one line here, not a traceback further on."""
    result = model.extend(x, cache)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor)):
        raise ZooError(f"{type(model).__name__}.extend(x, cache) must return (logits, cache)")
    logits = result[0]
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(x.shape):
        raise ZooError(
            f"{type(model).__name__}.extend(x, cache) on x of shape {tuple(x.shape)} gave logits {tuple(logits.shape)}, "
            f"expected [batch, n, vocab] = {(*x.shape, 'vocab')}"
        )
    return result


def _sample_cached(
    model: Any,
    ids: list[int],
    length: int,
    window: int,
    draw: Draw,
    n: int,
    device: torch.device,
    on_ids: Callable[[list[int]], None] | None = None,
) -> list[list[int]]:
    """The loop for cache models (the window rule is in the module docstring): one extend per character, every
    sample a row of one batch. On the CPU the character is picked in NumPy, whose per-call cost is a fraction of
    torch's (at batch 1 the loop's own cost adds to every extend). As the other loops, the logits are checked
    finite and the first sample handed to `on_ids` every `STREAM_STEPS` characters."""
    temperature, top_k, noise = draw.temperature, draw.top_k, draw.noise
    cpu = device.type == "cpu"
    seq = torch.empty(n, len(ids) + length, dtype=torch.long)  # prompt and drawn characters, on the CPU
    seq[:, : len(ids)] = torch.tensor(ids)
    seq_np = seq.numpy()
    end = len(ids)  # characters in seq so far
    held = min(end, window)  # characters in the cache
    restart = max(1, window // 2)
    logits, cache = _extend(model, seq[:, end - held : end].to(device), model.init_cache(n))
    finite = True if cpu else torch.ones((), dtype=torch.bool, device=device)
    flushed, last = 0, min(length, STREAM_STEPS) - 1
    g_start = g_end = 0  # the block of noise in NumPy (CPU): steps [g_start, g_end)
    g_block: Any = None
    for k in range(length):
        if cpu:
            row = logits[:, -1].numpy().astype(np.float32)  # a copy: _pick_np writes to it, and the model may own the memory
            finite = finite and bool(np.isfinite(row.max()))  # the max is nan if any is, inf if any is
            if noise is not None and k >= g_end:
                g_start, block = noise.block_for(k)
                g_block, g_end = block.numpy(), g_start + len(block)
            g = None if noise is None else g_block[k - g_start]
            nxt = _pick_np(row[0], temperature, top_k, g[0]) if n == 1 and g is not None else _pick_np(row, temperature, top_k, g)
            seq_np[:, end] = nxt
        else:
            row = logits[:, -1]
            finite &= torch.isfinite(row.amax())
            seq[:, end] = _pick(row, temperature, top_k, noise.at(k) if noise is not None else None).cpu()
        end += 1
        if k == last:
            if not bool(finite):
                _refuse_non_finite()
            if on_ids is not None:
                on_ids(seq_np[0, len(ids) + flushed : len(ids) + k + 1].tolist())
            flushed, last = k + 1, min(length, k + 1 + STREAM_STEPS) - 1
        if k + 1 == length:
            break
        if held + 1 > window:  # the window is full: restart it from its last `restart` characters
            held = restart
            logits, cache = _extend(model, seq[:, end - held : end].to(device), model.init_cache(n))
        else:
            held += 1
            logits, cache = _extend(model, seq[:, end - 1 : end].to(device), cache)
    return seq_np[:, len(ids) :].tolist()


@torch.inference_mode()
def sample_uncached(
    model: nn.Module,
    vocab: Vocab,
    prompt: str,
    length: int,
    *,
    context: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int | None = None,
    num_samples: int = 1,
) -> list[str]:
    """What `sample` gives a cache model, without its cache (the reference for tests and bench): the same window
    rule, but forward() over the whole window for every character. The same seed gives the same text."""
    ids = check_prompt(vocab, prompt)
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    noise = Noise(generator, length, num_samples, len(vocab)) if temperature > 0 else None
    rows = torch.tensor(ids).repeat(num_samples, 1)
    start = max(0, len(ids) - context)
    for k in range(length):
        logits = model(rows[:, start:].to(device))
        logits = logits[:, -1] if logits.dim() == 3 else logits  # "every" targets: the last position's
        nxt = _pick(logits, temperature, top_k, noise.at(k) if noise is not None else None)
        rows = torch.cat([rows, nxt.cpu()[:, None]], 1)
        if rows.shape[1] - start > context:
            start = rows.shape[1] - max(1, context // 2)
    return [vocab.decode(row[len(ids) :]) for row in rows.tolist()]


def _restart(state: Any, fresh: Any, rows: torch.Tensor) -> Any:
    """`state` with the rows where `rows` is True set back to `fresh`: out of place, since a model's
    state may be a view that it does not expect to be written to."""
    if isinstance(state, tuple):
        return tuple(_restart(t, f, rows) for t, f in zip(state, fresh))
    return torch.where(rows.view(-1, *[1] * (state.dim() - 1)), fresh, state)


def _map(fn: Any, state: Any) -> Any:
    return tuple(fn(t) for t in state) if isinstance(state, tuple) else fn(state)


@torch.no_grad()
def sample_by_rerunning(
    model: nn.Module,
    vocab: Vocab,
    prompt: str,
    length: int,
    *,
    context: int,
    every: bool,
    temperature: float,
    top_k: int | None,
    seed: int | None,
    num_samples: int = 1,
) -> str | list[str]:
    """The lesson's way (reference for tests): run the model over the last `context` chars each time.

    With num_samples > 1 the windows of all samples run as one batch (a list comes back),
    drawing the noise in the order `sample` does.
    """
    ids = [check_prompt(vocab, prompt) for _ in range(num_samples)]
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for _ in range(length):
        x = torch.tensor([row[-context:] for row in ids], device=device)
        logits = model(x)
        logits = logits[:, -1] if every else logits
        for row, nxt in zip(ids, pick(logits, temperature, top_k, generator).tolist()):
            row.append(nxt)
    texts = [vocab.decode(row[len(row) - length :]) if length else "" for row in ids]
    return texts if num_samples > 1 else texts[0]
