"""The sampling contract for "cache" models (issue 20, point 1): declared capabilities, the cached sampler and its
window rule, the first-batch refusals, the conformance kit's cache checks, and the docs' example model.

The model is the one docs/plugins.md shows (tests/_cache_model.py, kept equal to the docs' code block by a test
below), at a tiny size: every test here runs in well under a second or two.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _cache_model import TinyCausalTransformer
from _kit_models import SpecPlugin
from helpers import one_error, zoo_in_process
from torch import nn

import zoo
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.model import Capabilities, CharModel, capabilities
from zoo.sampling import STREAM_STEPS, sample, sample_uncached
from zoo.testing import ContractError, check_model, tiny_text

REPO = Path(__file__).resolve().parents[1]
TEXT = tiny_text(2000)
VOCAB = Vocab.from_text(TEXT)
CONTEXT = 16  # the model's context_length
WINDOWS = zoo.Batching(kind="windows", length=8, stride=1, targets="every")
HPARAMS = {"n_embd": 32, "n_head": 2, "context": CONTEXT}


@pytest.fixture(scope="module")
def model() -> TinyCausalTransformer:
    torch.manual_seed(0)
    return TinyCausalTransformer(len(VOCAB), **HPARAMS).eval()


def _cache_spec(name: str, **changes) -> zoo.ModelSpec:
    fields = {
        "summary": "The docs' tiny causal transformer.",
        "builder": "_cache_model:TinyCausalTransformer",
        "dataset": "pydoc-topics",
        "hparams": HPARAMS,
        "batching": WINDOWS,
        "recipe": (zoo.Stage(lr=3e-3, epochs=1),),
        "batch_size": 64,
    }
    return zoo.ModelSpec(name=name, **{**fields, **changes})


# --- declared capabilities ---------------------------------------------------------------------------------------


def test_the_defaults_are_a_step_model_for_charmodel_and_a_plain_module():
    assert capabilities(CharModel()) == Capabilities(stateful=False, fused_loss=False, sampling="step", context_length=None)
    assert capabilities(nn.Linear(2, 2)) == Capabilities()


def test_a_plain_module_declares_the_same_attributes(model):
    class Plain(nn.Module):
        sampling, context_length, fused_loss = "cache", 8, True

        def init_cache(self, batch_size):
            return None

        def extend(self, x, cache):
            return None, cache

    assert capabilities(Plain()) == Capabilities(fused_loss=True, sampling="cache", context_length=8)
    assert capabilities(model) == Capabilities(sampling="cache", context_length=CONTEXT)  # set in __init__


class _NoExtend(CharModel):
    sampling, context_length = "cache", 8

    def init_cache(self, batch_size):
        return None


BAD_DECLARATIONS = [
    ({"sampling": "fast"}, r"declares sampling = 'fast'; declare sampling = \"step\" .* or \"cache\""),
    ({"context_length": 0}, r"declares context_length = 0; declare a whole number of characters >= 1"),
    ({"context_length": "64"}, r"declares context_length = '64'"),
    ({"context_length": True}, r"declares context_length = True"),
    ({"sampling": "cache"}, r"declares sampling = \"cache\" but no context_length; declare the most characters"),
    ({"sampling": "cache", "context_length": 8}, r"declares sampling = \"cache\" but has no init_cache or extend"),
    ({"sampling": "cache", "context_length": 8, "stateful": True, "init_cache": 1}, r"has no init_cache or extend"),
]


@pytest.mark.parametrize(("declared", "message"), BAD_DECLARATIONS)
def test_a_bad_declaration_is_one_line_naming_the_class(declared, message):
    bad = type("Declared", (CharModel,), declared)()
    with pytest.raises(ZooError, match=message) as info:
        capabilities(bad)
    assert str(info.value).startswith("model class Declared declares ") and "\n" not in str(info.value)


def test_a_cache_model_missing_extend_or_stateful_is_refused():
    with pytest.raises(ZooError, match=r"model class _NoExtend declares sampling = \"cache\" but has no extend; define"):
        capabilities(_NoExtend())
    stateful = type("StatefulCache", (TinyCausalTransformer,), {"stateful": True})(len(VOCAB))
    with pytest.raises(ZooError, match=r"StatefulCache declares sampling = \"cache\" and stateful = True; .* declare stateful = False"):
        capabilities(stateful)


def test_importing_charmodel_imports_torch_only_when_used():
    code = "import sys, zoo; assert 'torch' not in sys.modules; zoo.CharModel; assert 'torch' in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
    assert zoo.CharModel is CharModel and "CharModel" in zoo.__all__


# --- the cached sampler: the same text as forward() over the same windows ----------------------------------------

SHORT, LONG = "Th", "The quick brown fox jumps over the lazy dog. "  # shorter and longer than every window below


@pytest.mark.parametrize("window", [1, 2, 7, 8, CONTEXT])
@pytest.mark.parametrize(("temperature", "top_k", "num_samples"), [(0.0, None, 1), (0.8, None, 1), (0.8, 5, 3), (1.0, None, 2)])
def test_cached_and_uncached_give_the_same_text(model, window, temperature, top_k, num_samples):
    for prompt in (SHORT, LONG):
        kw = {"context": window, "temperature": temperature, "top_k": top_k, "seed": 3, "num_samples": num_samples}
        cached = sample(model, VOCAB, prompt, 40, **kw)
        assert cached == sample_uncached(model, VOCAB, prompt, 40, **kw), (prompt, window)
        assert all(len(text) == 40 and not VOCAB.unknown(text) and "\0" not in text for text in cached)


def test_the_same_seed_gives_the_same_text_and_another_seed_another(model):
    run = lambda seed: sample(model, VOCAB, LONG, 60, context=8, temperature=1.0, seed=seed)  # noqa: E731
    assert run(1) == run(1) != run(2)


class _Counting(TinyCausalTransformer):
    """Records n of every extend, and how many caches were started."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []
        self.caches = 0

    def init_cache(self, batch_size):
        self.caches += 1
        return super().init_cache(batch_size)

    def extend(self, x, cache):
        self.calls.append(x.shape[1])
        return super().extend(x, cache)


@pytest.mark.parametrize(
    ("prompt", "window", "expected"),
    [
        ("abc", 8, [3, 1, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4, 1, 1, 1]),  # restart every W - W // 2 + 1 characters
        ("abcdefghijk", 8, [8, 4, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4, 1, 1, 1]),  # a long prompt: full at once
        ("abc", 7, [3, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3, 1, 1, 1, 1]),  # odd: restart from 7 // 2 = 3
        ("abc", 2, [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        ("abc", 1, [1] * 20),  # every character a fresh cache of one
    ],
)
def test_the_restart_rule(prompt, window, expected):
    torch.manual_seed(0)
    counting = _Counting(len(VOCAB), **HPARAMS).eval()
    sample(counting, VOCAB, prompt, 20, context=window, temperature=0.8, seed=0, num_samples=2)
    assert counting.calls == expected
    assert counting.caches == 1 + sum(_restarted(expected, i, window) for i in range(1, len(expected)))


def _restarted(calls: list[int], i: int, window: int) -> bool:
    """Whether extend call i started a fresh cache: the window would have held more than W characters."""
    held = calls[0]
    for n in calls[1:i]:
        held = n if held + 1 > window else held + 1
    return held + 1 > window


def test_streaming_hands_on_the_text_as_it_is_drawn(model):
    pieces: list[str] = []
    text = sample(model, VOCAB, SHORT, 2 * STREAM_STEPS + 10, context=8, seed=0, on_text=pieces.append)[0]
    assert [len(p) for p in pieces] == [STREAM_STEPS, STREAM_STEPS, 10]
    assert "".join(pieces) == text


class _Overflows(TinyCausalTransformer):
    def extend(self, x, cache):
        logits, cache = super().extend(x, cache)
        return (logits * float("inf") if cache[0].shape[2] > 4 else logits), cache


def test_non_finite_logits_are_refused_in_one_line():
    torch.manual_seed(0)
    with pytest.raises(ZooError, match="probabilities are not finite numbers") as info:
        sample(_Overflows(len(VOCAB), **HPARAMS).eval(), VOCAB, SHORT, 20, context=8, seed=0)
    assert "\n" not in str(info.value)


def test_a_window_longer_than_the_context_length_is_refused(model):
    with pytest.raises(ZooError, match=rf"trained on windows of 17 characters, more than its context_length {CONTEXT}"):
        sample(model, VOCAB, SHORT, 10, context=CONTEXT + 1)
    with pytest.raises(ZooError, match="samples within a window, but this one was trained on streams"):
        sample(model, VOCAB, SHORT, 10, context=None)


# --- the first-batch check: what the declaration rules out, before anything is written -------------------------


class _DeclaresFast(TinyCausalTransformer):
    sampling = "fast"


REFUSED = [
    ("too-long", {"batching": zoo.Batching(kind="windows", length=CONTEXT + 1, targets="every")},
     rf"its batching length {CONTEXT + 1} is longer than the model's context_length {CONTEXT}"),
    ("streams", {"batching": zoo.Batching(kind="streams", length=8), "split": "tail"},
     r"sampling = \"cache\" trains on \"windows\" batching .*, not \"streams\""),
    ("bad-declaration", {"builder": "test_sampling_cache:_DeclaresFast"}, r"model class _DeclaresFast declares sampling = 'fast'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "changes", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_train_refuses_what_the_declaration_rules_out(zoo_plugin, capsys, small_corpus, tmp_path, name, changes, message):
    zoo_plugin(SpecPlugin(_cache_spec(f"cache-{name}", **changes)))
    out = tmp_path / "run"
    with pytest.raises(ZooError, match=message):
        zoo.train(f"cache-{name}", data=str(small_corpus), out=str(out), device="cpu", epochs=1, quiet=True)
    assert not out.exists()
    args = ("train", f"cache-{name}", "--data", str(small_corpus), "--out", str(out), "--device", "cpu", "--epochs", "1", "--quiet")
    line = one_error(*zoo_in_process(capsys, *args)[::2])
    assert f"model 'cache-{name}' does not fit the char-lm task: " in line
    assert not out.exists()


def test_a_step_model_that_declares_a_context_length_is_held_to_it(zoo_plugin, small_corpus, tmp_path):
    from _kit_models import kit_spec

    spec = kit_spec("step-ctx", builder="test_sampling_cache:_ShortRnn", hparams={"n_fac": 4, "n_hidden": 16}, tiny={})
    zoo_plugin(SpecPlugin(spec))
    with pytest.raises(ZooError, match=r"its batching length 8 is longer than the model's context_length 4"):
        zoo.train("step-ctx", data=str(small_corpus), out=str(tmp_path / "run"), device="cpu", epochs=1, quiet=True)
    assert not (tmp_path / "run").exists()


def _short_rnn():
    from zoo_lesson6.models import CharRnn

    return type("_ShortRnn", (CharRnn,), {"context_length": 4, "__module__": __name__})


_ShortRnn = _short_rnn()


# --- the docs' example: passes the kit, trains, samples the same text cached and uncached ----------------------


def test_the_docs_example_is_the_tested_model():
    docs = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert (REPO / "tests" / "_cache_model.py").read_text(encoding="utf-8") in docs


def test_the_docs_example_passes_the_kit_trains_and_samples_cached_as_uncached(zoo_plugin, small_corpus, tmp_path):
    zoo_plugin(SpecPlugin(_cache_spec("docs-cache", num_params=18_741)))
    results = check_model("docs-cache", workdir=tmp_path, vocab_size=85)  # 85: the dataset's vocabulary, for num_params
    assert results == {**dict.fromkeys(results, "ok"), "listing": results["listing"]}, results
    trained = zoo.train("docs-cache", data=str(small_corpus), out=str(tmp_path / "trained"), device="cpu", epochs=1, quiet=True)
    assert trained.context == 8
    kw = {"context": trained.context, "temperature": 0.8, "seed": 5, "num_samples": 2}
    assert trained.sample("The ", 80, temperature=0.8, seed=5, num_samples=2) == sample_uncached(
        trained.model, trained.vocab, "The ", 80, **kw
    )


class _OffByOne(nn.Embedding):
    def forward(self, idx):  # continuing a cache, every position one too far
        return super().forward((idx + (idx[:1] > 0).long()).clamp(max=self.num_embeddings - 1))


class _PositionsOffByOne(TinyCausalTransformer):
    def __init__(self, vocab_size, **hparams):
        super().__init__(vocab_size, **hparams)
        self.pos.__class__ = _OffByOne


def test_the_kit_catches_an_extend_with_positions_off_by_one(zoo_plugin, tmp_path):
    zoo_plugin(SpecPlugin(_cache_spec("cache-off-by-one", builder="test_sampling_cache:_PositionsOffByOne")))
    with pytest.raises(
        ContractError,
        match=r"\[step\] extend over a row of 8 in two pieces \(split at 1: 1 then 7 characters, rows=3\) "
        r"differs from extend of the whole row, first at position 1 .*continue after the 1 characters its cache holds",
    ):
        check_model("cache-off-by-one", checks=["step"], workdir=tmp_path)
    with pytest.raises(ContractError, match=r"\[sampling\] the cached sampler \(init_cache/extend\) and forward\(\) over the same windows"):
        check_model("cache-off-by-one", checks=["sampling"], workdir=tmp_path)
    assert check_model("cache-off-by-one", checks=["forward"], workdir=tmp_path) == {"forward": "ok"}


def test_the_kit_runs_the_step_checks_for_step_models(zoo_plugin, tmp_path):
    from _kit_models import kit_spec

    zoo_plugin(SpecPlugin(kit_spec("step-kit", builder="_kit_models:StepIgnoresInput", hparams={"n_fac": 4, "n_hidden": 16}, tiny={})))
    with pytest.raises(ContractError, match="stepping with step"):
        check_model("step-kit", checks=["step"], workdir=tmp_path)
