"""char-transformer: its key/value cache gives forward's numbers, in one piece or several, in torch and in NumPy; the
bundled weights sample the same text through the cache as without it, and from the command line."""

from __future__ import annotations

import pytest
import torch
from _plugin_helpers import ok, run_zoo
from zoo_beyond import transformer
from zoo_beyond.transformer import CharTransformer

import zoo
from zoo import registry
from zoo.model import build, capabilities
from zoo.sampling import sample_uncached

V = 40
CONTEXT = 64  # the spec's block_size, also in the tiny settings


def model(**hparams) -> CharTransformer:
    """The spec's model (tiny unless hparams say otherwise), its LayerNorms and biases moved off their initial
    ones and zeros so that a kernel that skipped one would be caught."""
    spec = registry.get_model("char-transformer")
    torch.manual_seed(0)
    m = build(spec, V, {**spec.hparams, **spec.tiny, **hparams})
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def rows(batch: int, length: int = CONTEXT) -> torch.Tensor:
    return torch.randint(1, V, (batch, length), generator=torch.Generator().manual_seed(batch))


def extend_by_pieces(m: CharTransformer, x: torch.Tensor, cuts: list[int]) -> torch.Tensor:
    cache, out = m.init_cache(x.shape[0]), []
    for a, b in zip([0, *cuts], [*cuts, x.shape[1]]):
        logits, cache = m.extend(x[:, a:b], cache)
        out.append(logits)
    assert cache.length == x.shape[1]
    return torch.cat(out, 1)


@pytest.fixture
def numpy_steps(monkeypatch) -> list[int]:
    """The positions the NumPy kernel was run at."""
    seen: list[int] = []
    step = transformer._Arrays.step

    def counted(self, char, pos):
        seen.append(pos)
        return step(self, char, pos)

    monkeypatch.setattr(transformer._Arrays, "step", counted)
    return seen


def test_it_declares_how_zoo_samples_it():
    declared = capabilities(model(block_size=48))
    assert (declared.sampling, declared.context_length, declared.stateful) == ("cache", 48, False)


@pytest.mark.parametrize("batch", [1, 3])
def test_extend_over_a_whole_row_equals_forward(batch):
    m, x = model(), rows(batch)
    with torch.no_grad():
        torch.testing.assert_close(extend_by_pieces(m, x, []), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cuts", [[1], [17], [63], [5, 6, 40]])
@pytest.mark.parametrize("batch", [1, 3])
def test_extend_in_pieces_equals_forward(batch, cuts):
    m, x = model(), rows(batch)
    with torch.no_grad():
        torch.testing.assert_close(extend_by_pieces(m, x, cuts), m(x), rtol=1e-5, atol=1e-5)


def test_the_numpy_kernel_extends_one_character_at_a_time_as_forward_does(numpy_steps):
    m, x = model(n_embd=32, n_head=4, n_layer=2), rows(1)
    with torch.inference_mode():
        stepped = extend_by_pieces(m, x, list(range(1, CONTEXT)))
        whole = m(x)
    assert numpy_steps == list(range(CONTEXT))  # every position went through NumPy
    torch.testing.assert_close(stepped, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("numpy_first", [True, False])
def test_numpy_and_torch_share_one_cache(numpy_first, numpy_steps):
    """Ten characters one at a time through NumPy and the rest through torch (gradients on), or the other way round."""
    m, x = model(n_embd=32, n_head=4, n_layer=2), rows(1)
    cache, out = m.init_cache(1), []
    pieces = [(0, 10, numpy_first), (10, CONTEXT, not numpy_first)]
    for a, b, through_numpy in pieces:
        for i in range(a, b) if through_numpy else [a]:
            with torch.inference_mode() if through_numpy else torch.enable_grad():
                logits, cache = m.extend(x[:, i : i + 1] if through_numpy else x[:, a:b], cache)
            out.append(logits.detach())
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(out, 1), m(x), rtol=1e-5, atol=1e-5)
    assert numpy_steps == (list(range(10)) if numpy_first else list(range(10, CONTEXT)))


def test_the_numpy_kernel_folds_the_weights_again_after_they_change(numpy_steps):
    m, x = model(n_embd=32, n_head=4, n_layer=2), rows(1)
    with torch.inference_mode():
        before = extend_by_pieces(m, x, list(range(1, CONTEXT)))
    with torch.no_grad():
        m.blocks[0].ln_1.bias.add_(0.5)  # in place, as an optimizer step changes it
    with torch.inference_mode():
        after, whole = extend_by_pieces(m, x, list(range(1, CONTEXT))), m(x)
    assert numpy_steps == [*range(CONTEXT), *range(CONTEXT)]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_the_torch_path_extends_one_character_at_a_time_as_forward_does(batch, numpy_steps):
    m, x = model(), rows(batch)
    stepped = extend_by_pieces(m, x, list(range(1, CONTEXT)))  # gradients on: torch even at batch 1
    torch.testing.assert_close(stepped, m(x), rtol=1e-5, atol=1e-5)
    assert numpy_steps == []


def test_the_cached_characters_matter():
    """Extending after a cache of other characters gives other logits (the cache is read, not just filled)."""
    m, x = model(), rows(1)
    with torch.inference_mode():
        _, a = m.extend(x[:, :20], m.init_cache(1))
        _, b = m.extend(x[:, 20:40], m.init_cache(1))
        assert not torch.allclose(m.extend(x[:, 40:41], a)[0], m.extend(x[:, 40:41], b)[0])


def test_more_than_the_context_is_refused():
    m, x = model(), rows(1, CONTEXT + 1)
    with pytest.raises(ValueError, match="context_length 64"):
        m(x)
    with torch.no_grad():
        _, cache = m.extend(x[:, :CONTEXT], m.init_cache(1))
        with pytest.raises(ValueError, match="context_length 64"):
            m.extend(x[:, CONTEXT:], cache)


def test_dropout_only_in_training():
    m, x = model(dropout=0.3), rows(2)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
        m.train()
        assert not torch.allclose(m(x), m(x))


def test_the_output_layer_is_the_embedding():
    m = model()
    assert [name for name, t in m.state_dict().items() if t.shape[0] == V] == ["wte.weight"]  # no second [V, embd]


# --- the bundled weights -------------------------------------------------------------------------------------------

PROMPT = "The philosopher, in the" + " end" * 20  # longer than the window of 64: the sampler keeps its last 64


@pytest.fixture(scope="module")
def bundled():
    return zoo.load("char-transformer")


def uncached(m, length: int, seed: int, num_samples: int = 1, temperature: float = 0.8) -> list[str]:
    return sample_uncached(m.model, m.vocab, PROMPT, length, context=m.context, temperature=temperature, seed=seed, num_samples=num_samples)


def test_the_bundled_weights_sample_the_same_text_through_numpy_as_without_the_cache(bundled, numpy_steps):
    """Batch 1 on the CPU: every character after the prompt through the NumPy kernel; 200 characters restart the
    window of 64 several times."""
    cached = bundled.sample(PROMPT, 200, temperature=0.8, seed=11)
    assert [cached] == uncached(bundled, 200, seed=11)
    assert len(numpy_steps) > 150 and max(numpy_steps) == bundled.context - 1
    assert cached != bundled.sample(PROMPT, 200, temperature=0.8, seed=12)  # the seed matters


@pytest.mark.parametrize("temperature", [0.8, 0.0])
def test_the_bundled_weights_sample_the_same_text_through_torch_as_without_the_cache(bundled, numpy_steps, temperature):
    """Several samples: one batch through torch's extend."""
    cached = bundled.sample(PROMPT, 120, temperature=temperature, seed=5, num_samples=3)
    assert cached == uncached(bundled, 120, seed=5, num_samples=3, temperature=temperature)
    assert numpy_steps == []
    assert len(set(cached)) == (3 if temperature else 1)


def test_zoo_sample_char_transformer_uses_the_bundled_weights():
    runs = [ok(run_zoo("sample", "char-transformer", "--prompt", "for thos", "--length", "80", "--seed", "3")).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith("for thos") and len(runs[0].strip()) >= 80
