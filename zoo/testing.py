"""zoo's test kit for plugin authors, also a pytest plugin (entry point "zoo" in the group pytest11).

Installing zoo gives every pytest run:

- the fixture `zoo_plugin`: `zoo_plugin(obj, name=None)` registers a plugin object for one
  test; it is unregistered afterwards, whatever happens;
- `check_model(name)`: the model contract, run on any registered model in the `tiny`
  configuration its spec declares (see `CHECKS` for what is checked);
- `CHECKS`: the names of the checks, to parametrise a suite with one test per check.

    import pytest
    from zoo.testing import CHECKS, check_model

    @pytest.mark.parametrize("check", CHECKS)
    def test_contract(check, tmp_path):
        check_model("my-model", checks=[check], workdir=tmp_path)

Importing this module does not import torch (pytest loads it in every run, of every
project); a check imports torch when it runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.spec import ModelSpec

try:  # check_model works without pytest; only the fixture needs it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

__all__ = ["CHECKS", "ContractError", "check_model", "registered_plugin", "tiny_hparams", "tiny_text", "zoo_plugin"]

CHECKS: tuple[str, ...] = (
    "spec",
    "listing",
    "build",
    "meta",
    "forward",
    "step",
    "train_step",
    "save_load",
    "strict_load",
    "sampling",
    "num_params",
    "cli",
)
"""Every check `check_model` runs, in order (docs/plugins.md has the same table):

spec         the spec is consistent: `tiny` only overrides declared hyper-parameters, the builder
             imports and takes every hyper-parameter the spec names (or **kwargs), the dataset is
             registered, the recipe and optimizer are ones zoo's trainer runs
listing      `zoo list` and `zoo info` find the model without importing torch (a subprocess that
             loads only the model's plugin; skipped for plugins registered in process)
build        the builder makes a torch.nn.Module on the CPU with float parameters; the same seed
             gives the same weights
meta         the builder also builds under `torch.device("meta")` (as zoo does first, to check a config's
             sizes before allocating anything), every tensor on the meta device and shaped as in a real build
forward      forward(x) on x [batch, length] gives finite logits [batch, vocab] ("next" targets)
             or [batch, length, vocab] ("every" targets, "streams"), for batches of 3 and 1; a
             stateful model's forward(x, state) returns (logits, state)
step         init_state(batch) is batch-first; step(x, state) gives logits [batch, vocab] and a
             state of the same shapes; stepping from init_state over a window equals forward
             (for "windows" batching and stateful models), with step() and with the sampler's
             fast form of the model if it has one
train_step   one step of the spec's optimiser at the recipe's first learning rate lowers the loss on
             a fixed batch, and every trainable parameter gets a gradient; a model with
             `fused_loss` returns from forward(x, targets=y) the cross-entropy of its logits, with
             the same gradients, and is trained that way (as the trainer does)
save_load    weights saved as safetensors and loaded into a differently seeded model give an
             identical state dict and identical outputs
strict_load  loading rejects a tensor of the wrong shape and a missing tensor, naming it, and
             leaves the model as it was
sampling     seeded sampling (zoo's sampler, 2 samples at once) is deterministic and yields only
             characters of the vocabulary, never the padding
num_params   the spec's num_params is the parameter count at the default hyper-parameters and the
             default dataset's vocabulary; when it is missing or wrong, the failure gives the exact
             `num_params=N` to write in the spec (skipped only when the dataset is not available
             offline and no vocab_size is given)
cli          through the `zoo` command (click's CliRunner): `zoo info`, `zoo train --epochs 1` on a
             tiny text with the tiny hyper-parameters, `zoo eval`, and `zoo sample --seed` twice

Checks other than spec and listing test the char-lm contract; for other tasks they are skipped.
"""

_ANY_TASK = ("spec", "listing")  # the other checks test the char-lm contract

DEFAULT_CHARS = 10_000  # the tiny corpus: this many characters of Python's pydoc topics


class ContractError(AssertionError):
    """A model broke the contract; the message names the model, the check and what went wrong."""


class _Skip(Exception):
    pass


# --- registering a plugin for one test -------------------------------------------------------------------


@contextlib.contextmanager
def registered_plugin(plugin: Any, name: str | None = None) -> Iterator[str]:
    """Register `plugin` (a module, class or instance with zoo hooks) while the block runs; yields its name.

    The registry is collected again on entry and on exit, so the plugin's models appear and go.
    """
    from zoo.plugins import host

    name = name or _plugin_name(plugin)
    host().register(plugin, name=name)
    try:
        yield name
    finally:
        if host().pm.get_plugin(name) is not None:
            host().unregister(name)


def _plugin_name(plugin: Any) -> str:
    base = getattr(plugin, "__name__", None) or type(plugin).__name__
    return f"{base}-{id(plugin):x}"


if pytest is not None:

    @pytest.fixture
    def zoo_plugin() -> Iterator[Callable[..., str]]:
        """`zoo_plugin(obj, name=None)` registers a plugin object for this test and returns its name."""
        with contextlib.ExitStack() as stack:

            def register(plugin: Any, name: str | None = None) -> str:
                return stack.enter_context(registered_plugin(plugin, name))

            yield register


# --- the tiny configuration ------------------------------------------------------------------------------


def tiny_hparams(spec: ModelSpec) -> dict[str, Any]:
    """The spec's hyper-parameters with its `tiny` overrides applied."""
    return {**spec.hparams, **spec.tiny}


def tiny_text(n_chars: int = DEFAULT_CHARS) -> str:
    """`n_chars` characters of English prose that ship with CPython (pydoc topics): a corpus for tests."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)).replace("\0", "")[:n_chars]


# --- check_model -----------------------------------------------------------------------------------------


def check_model(
    name: str,
    checks: Iterable[str] | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    text: str | None = None,
    vocab_size: int | None = None,
) -> dict[str, str]:
    """Run the model contract on the registered model `name`; returns {check: "ok" or "skipped: why"}.

    `checks` picks some of `CHECKS` (default: all). `workdir` is where files go (default: a
    temporary folder, removed afterwards). `text` is the training text (default: `tiny_text()`).
    `vocab_size` is the vocabulary of the spec's dataset, for the num_params check.
    Raises `ContractError` (an AssertionError) listing every check that failed. Under pytest, a
    call whose checks were all skipped is reported as a skipped test.
    """
    from zoo import registry

    wanted = list(CHECKS if checks is None else checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(map(repr, unknown))}; known: {', '.join(CHECKS)}")
    try:
        spec = registry.get_model(name)
    except ZooError as exc:
        raise ContractError(f"model {name!r} is not registered: {exc}") from None
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="zoo-check-"))
        checker = _Checker(spec, Path(workdir), text if text is not None else tiny_text(), vocab_size)
        results: dict[str, str] = {}
        failures: list[str] = []
        for check in wanted:
            try:
                if spec.task != "char-lm" and check not in _ANY_TASK:
                    raise _Skip(f"the {check} check covers the char-lm contract; {name!r} has task {spec.task!r}")
                getattr(checker, f"check_{check}")()
            except _Skip as exc:
                results[check] = f"skipped: {exc}"
            except ContractError as exc:
                failures.append(f"[{check}] {exc}")
            except Exception as exc:  # a crash inside the model's code is a failure of that check
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4))
                failures.append(f"[{check}] raised {type(exc).__name__}: {exc}\n{tb}")
            else:
                results[check] = "ok"
    if failures:
        raise ContractError(f"model {name!r} fails the zoo contract:\n" + "\n".join(failures))
    skipped = [f"{c}: {r.removeprefix('skipped: ')}" for c, r in results.items() if r.startswith("skipped")]
    if wanted and len(skipped) == len(wanted) and pytest is not None and os.environ.get("PYTEST_CURRENT_TEST"):
        pytest.skip("; ".join(skipped))
    return results


def _fail(message: str) -> None:
    raise ContractError(message)


def _tensors(state: Any) -> list[Any]:
    """The tensors of a state (a tensor, or a tuple of states), in order."""
    if isinstance(state, tuple):
        return [t for s in state for t in _tensors(s)]
    return [state]


def _plugin_file(plugin_name: str) -> str:
    """Where the plugin that registered a spec is defined: its module's file, for a message that says what to edit."""
    import inspect

    from zoo.plugins import host

    plugin = host().pm.get_plugin(plugin_name)
    try:
        path = inspect.getsourcefile(plugin if inspect.ismodule(plugin) or inspect.isclass(plugin) else type(plugin))
    except TypeError:  # not registered, or defined in no file
        path = None
    return path or f"the plugin {plugin_name!r}"


class _Checker:
    """The checks of one model; each builds what it needs, so any one can run alone."""

    def __init__(self, spec: ModelSpec, workdir: Path, text: str, vocab_size: int | None) -> None:
        self.spec = spec
        self.workdir = workdir
        self.text = text
        self.vocab_size = vocab_size
        self.hparams = tiny_hparams(spec)
        self.length = spec.batching.length
        self.every = spec.batching.kind == "streams" or spec.batching.targets == "every"

    # helpers

    @property
    def vocab(self) -> Any:
        from zoo.data.vocab import Vocab

        if not hasattr(self, "_vocab"):
            if len(self.text) < 1000:
                _fail(f"the test text has {len(self.text)} characters; give at least 1,000")
            self._vocab = Vocab.from_text(self.text)
        return self._vocab

    def build(self, seed: int = 0, hparams: dict[str, Any] | None = None, vocab_size: int | None = None) -> Any:
        import torch

        from zoo.model import build

        torch.manual_seed(seed)
        try:
            return build(self.spec, vocab_size or len(self.vocab), self.hparams if hparams is None else hparams)
        except ZooError as exc:
            raise ContractError(str(exc)) from None

    def batch(self, rows: int = 3, seed: int = 0) -> tuple[Any, Any]:
        """A fixed batch (x, y) shaped as the trainer would feed it."""
        import torch

        g = torch.Generator().manual_seed(seed)
        v = len(self.vocab)
        x = torch.randint(1, v, (rows, self.length), generator=g)
        y = torch.randint(1, v, (rows, self.length) if self.every else (rows,), generator=g)
        return x, y

    @staticmethod
    def stateful(model: Any) -> bool:
        return bool(getattr(model, "stateful", False))

    def logits(self, model: Any, x: Any) -> Any:
        """What the trainer computes for a batch: forward(x), or forward(x, init_state) for a stateful model."""
        from zoo.tasks.charlm import forward

        logits, _ = forward(model, x)
        return logits

    def forward(self, model: Any, x: Any) -> Any:
        import torch

        with torch.no_grad():
            return self.logits(model, x)

    # the checks

    def check_spec(self) -> None:
        from zoo import registry
        from zoo.data.batching import SPLITS
        from zoo.model import check_builder_params, import_builder
        from zoo.spec import OPTIMIZERS

        s = self.spec
        if not isinstance(s, ModelSpec):
            _fail(f"registered a {type(s).__name__}, not a zoo.ModelSpec")
        extra = sorted(set(s.tiny) - set(s.hparams))
        if extra:
            _fail(f"tiny overrides {', '.join(extra)}, which hparams does not declare (declared: {', '.join(sorted(s.hparams)) or 'none'})")
        try:
            check_builder_params(s, import_builder(s))
        except ZooError as exc:
            _fail(str(exc))
        datasets = registry.get().datasets
        if s.dataset not in datasets:
            _fail(f"its dataset {s.dataset!r} is not registered (known: {', '.join(sorted(datasets)) or 'none'})")
        if s.optimizer not in OPTIMIZERS:
            _fail(f"optimizer {s.optimizer!r}: zoo's trainer knows {', '.join(OPTIMIZERS)}")
        if s.split not in SPLITS:
            _fail(f"split {s.split!r} is not one of {', '.join(SPLITS)}")
        if s.batch_size < 1:
            _fail(f"batch_size {s.batch_size} must be at least 1")
        bad = [st for st in s.recipe if not (st.lr > 0 and st.epochs >= 1)]
        if bad:
            _fail(f"recipe stages need lr > 0 and epochs >= 1: {bad}")

    def check_listing(self) -> None:
        from zoo.plugins import host

        info = host().infos.get(self.spec.plugin)
        if info is None or info.distribution == "(in process)":
            raise _Skip(f"plugin {self.spec.plugin!r} is registered in process, not installed through an entry point")
        code = (
            "import json, sys\n"
            "from zoo.cli import main\n"
            "codes = []\n"
            "for argv in (['list', sys.argv[1]], ['info', sys.argv[1]]):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as exc:\n"
            "        codes.append(exc.code)\n"
            "    else:\n"
            "        codes.append(0)\n"
            "print('RESULT ' + json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))\n"
        )
        env = {**os.environ, "ZOO_LOAD_PLUGINS": self.spec.plugin}
        env.pop("ZOO_DISABLE_PLUGINS", None)
        proc = subprocess.run(
            [sys.executable, "-c", code, self.spec.name], capture_output=True, text=True, env=env, timeout=120, cwd=self.workdir
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            _fail(f"`zoo list`/`zoo info` with only plugin {self.spec.plugin!r} loaded crashed:\n{proc.stderr[-2000:]}")
        result = json.loads(lines[-1].removeprefix("RESULT "))
        if result["codes"] != [0, 0]:
            _fail(f"`zoo list {self.spec.name}` / `zoo info {self.spec.name}` exited {result['codes']}:\n{proc.stderr[-2000:]}")
        if self.spec.name not in proc.stdout:
            _fail(f"`zoo list {self.spec.name}` does not show the model:\n{proc.stdout[-2000:]}")
        if result["torch"]:
            _fail(
                f"loading plugin {self.spec.plugin!r} imports torch, so every `zoo list` pays for it; "
                "import torch only in the module the builder names, never in the plugin module"
            )

    def check_build(self) -> None:
        import torch
        from torch import nn

        model = self.build(seed=0)
        if not isinstance(model, nn.Module):
            _fail(f"the builder returned {type(model).__name__}, not a torch.nn.Module")
        caps = self.capabilities(model)  # what the model declares decides the methods it needs
        needs = ("init_cache", "extend") if caps.sampling == "cache" else ("init_state", "step")
        for attr in ("forward", *needs):
            if not callable(getattr(model, attr, None)):
                _fail(f"the model has no method {attr}() (sampling = {caps.sampling!r} needs {' and '.join(needs)})")
        params = list(model.named_parameters())
        if not params:
            _fail("the model has no parameters")
        for pname, p in params:
            if p.device.type != "cpu":
                _fail(f"parameter {pname} is on {p.device}, not the CPU: build on the CPU; zoo moves the model")
            if not p.dtype.is_floating_point:
                _fail(f"parameter {pname} is {p.dtype}, not floating point")
        again = self.build(seed=0).state_dict()
        for key, value in model.state_dict().items():
            if key not in again or not torch.equal(value, again[key]):
                _fail(f"two builds with the same torch seed differ in {key}: initialise with torch's RNG so --seed reproduces a run")

    def check_meta(self) -> None:
        import torch

        from zoo.checkpoint import state_shapes
        from zoo.errors import first_line
        from zoo.model import import_builder

        real = state_shapes(self.build())
        import_builder(self.spec)  # as zoo does: the builder's module is imported outside the meta device
        try:
            with torch.device("meta"):
                shell = self.build()
        except Exception as exc:  # whatever the builder raises there, the remedy is the same
            reason = str(exc) if isinstance(exc, ContractError) else first_line(exc)
            _fail(
                f"the builder cannot build the model on torch.device('meta') ({reason}); zoo builds there first "
                "to check a config's sizes before allocating: make every tensor with torch's factory functions "
                "(torch.zeros, torch.randn, nn layers: they follow the device) and read no tensor's value in __init__ "
                "(no .item(), int(tensor) or if on a tensor)"
            )
        stray = [k for k, t in shell.state_dict(keep_vars=True).items() if not t.is_meta]
        if stray:
            _fail(
                f"built under torch.device('meta'), {', '.join(stray)} is still on the CPU: make it with torch's factory "
                "functions inside __init__ (not torch.from_numpy, .to('cpu'), or a tensor made at import time)"
            )
        shapes = state_shapes(shell)
        if shapes != real:
            keys = sorted(set(shapes) | set(real))
            wrong = [f"{k}: {shapes.get(k)} on meta, {real.get(k)} for real" for k in keys if shapes.get(k) != real.get(k)]
            _fail(f"the model built on torch.device('meta') differs from a real build: {'; '.join(wrong)}")

    def check_forward(self) -> None:
        import torch

        from zoo.tasks.charlm import STATEFUL_RESULT, logits_problem

        model = self.build().eval()
        for rows in (3, 1):
            x, _ = self.batch(rows)
            if self.stateful(model):
                with torch.no_grad():
                    state = model.init_state(rows)
                    result = model(x, state)
                if not (isinstance(result, tuple) and len(result) == 2):
                    _fail(STATEFUL_RESULT)
                out, new_state = result
                shapes, new_shapes = [tuple(t.shape) for t in _tensors(state)], [tuple(t.shape) for t in _tensors(new_state)]
                if new_shapes != shapes:
                    _fail(f"forward(x, state) changed the state's shapes from {shapes} to {new_shapes}")
            else:
                out = self.forward(model, x)
            problem = logits_problem(out, tuple(x.shape), self.spec.batching, len(self.vocab))  # zoo train's rule too
            if problem:
                _fail(problem)
            if not out.dtype.is_floating_point or not torch.isfinite(out).all():
                _fail("forward gave non-finite or non-float logits")

    def capabilities(self, model: Any) -> Any:
        """The model's declared capabilities, a declaration zoo cannot honour (or that rules out the spec's batching)
        failing the check in one line."""
        from zoo.model import batching_problem, capabilities

        try:
            caps = capabilities(model)
        except ZooError as exc:
            _fail(str(exc))
        problem = batching_problem(caps, self.spec.batching.kind, self.length)
        if problem:
            _fail(f"{problem} (the spec's batching: {self.spec.batching})")
        return caps

    def check_step(self) -> None:
        from zoo import sampling

        model = self.build().eval()
        if self.capabilities(model).sampling == "cache":
            self._check_cache(model)
            return
        steppers = [("step()", model)]
        fast = sampling.stepper(model) if hasattr(sampling, "stepper") else model
        if fast is not model:
            steppers.append(("the fused form the sampler uses (fused())", fast))
        for what, stepper in steppers:
            self._check_stepping(model, stepper, what)

    def _check_stepping(self, model: Any, stepper: Any, what: str) -> None:
        import torch

        rows = 3
        x, _ = self.batch(rows)
        with torch.no_grad():
            state = stepper.init_state(rows)
            tensors = _tensors(state)
            if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
                _fail(f"init_state returned {type(state).__name__}; a state is a tensor or a tuple of tensors")
            shapes = [tuple(t.shape) for t in tensors]
            if any(len(s) == 0 or s[0] != rows for s in shapes):
                _fail(f"init_state({rows}) gave shapes {shapes}: the first dimension of every state tensor must be the batch")
            outs = []
            for t in range(self.length):
                result = stepper.step(x[:, t], state)
                if not (isinstance(result, tuple) and len(result) == 2):
                    _fail(f"{what} must return (logits, new_state)")
                logits, state = result
                if tuple(logits.shape) != (rows, len(self.vocab)):
                    _fail(f"{what} on x of shape ({rows},) gave logits {tuple(logits.shape)}, expected {(rows, len(self.vocab))}")
                new_shapes = [tuple(s.shape) for s in _tensors(state)]
                if new_shapes != shapes:
                    _fail(f"{what} changed the state's shapes from {shapes} to {new_shapes}")
                outs.append(logits)
            end_state = state
            if self.stateful(model):
                full, full_state = model(x, model.init_state(rows))
            elif self.spec.batching.kind == "windows":
                full, full_state = model(x), None
            else:
                return  # a streams model that is not stateful: no window to compare with
        stepped = torch.stack(outs, 1) if self.every else outs[-1]
        if not torch.allclose(stepped, full, rtol=1e-4, atol=1e-5):
            diff = (stepped - full).abs().max().item()
            _fail(
                f"stepping with {what} from init_state over a window differs from forward (max difference {diff:.3g}); "
                "the sampler relies on it predicting exactly what forward() does"
            )
        if full_state is not None:
            for a, b in zip(_tensors(end_state), _tensors(full_state)):
                if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                    _fail(f"the state after stepping with {what} over a window differs from the state forward(x, state) returns")

    def _check_cache(self, model: Any) -> None:
        """The cache contract, in place of the step checks: extend over a whole row from init_cache equals forward,
        for a batch of several rows and of one, for the training window and the declared context_length; extending
        a row in two pieces equals extending it whole."""
        context_length = model.context_length
        for rows in (3, 1):
            for length in sorted({self.length, context_length}):
                x = self._cache_row(rows, length)
                whole = self._extend(model, x, model.init_cache(rows), f"a row of {length} (rows={rows})")
                self._compare_forward(model, x, whole)
                for k in sorted({1, length // 2, length - 1} - {0, length}):
                    self._compare_pieces(model, x, k, whole)

    def _cache_row(self, rows: int, length: int) -> Any:
        import torch

        g = torch.Generator().manual_seed(length)
        return torch.randint(1, len(self.vocab), (rows, length), generator=g)

    def _extend(self, model: Any, x: Any, cache: Any, what: str) -> tuple[Any, Any]:
        import torch

        with torch.no_grad():
            result = model.extend(x, cache)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor)):
            _fail(f"extend(x, cache) on {what} must return (logits, cache); got {type(result).__name__}")
        logits = result[0]
        want = (*x.shape, len(self.vocab))
        if tuple(logits.shape) != want:
            _fail(f"extend(x, cache) on x of shape {tuple(x.shape)} ({what}) gave logits {tuple(logits.shape)}, expected {want}")
        if not torch.isfinite(logits).all():
            _fail(f"extend(x, cache) on {what} gave non-finite logits")
        return result

    def _compare_forward(self, model: Any, x: Any, whole: tuple[Any, Any]) -> None:
        import torch

        full = self.forward(model, x)
        extended = whole[0] if self.every else whole[0][:, -1]
        if tuple(full.shape) != tuple(extended.shape) or not torch.allclose(extended, full, rtol=1e-4, atol=1e-5):
            diff = (extended - full).abs().max().item() if full.shape == extended.shape else float("nan")
            _fail(
                f"extend(x, init_cache({x.shape[0]})) over a row of {x.shape[1]} differs from forward(x) (max difference {diff:.3g}); "
                "zoo's cached sampler relies on extend predicting exactly what forward does"
            )

    def _compare_pieces(self, model: Any, x: Any, k: int, whole: tuple[Any, Any]) -> None:
        import torch

        rows, length = x.shape
        first, cache = self._extend(model, x[:, :k], model.init_cache(rows), f"the first {k} of a row of {length}")
        second, _ = self._extend(model, x[:, k:], cache, f"the last {length - k} of a row of {length}, after {k} in the cache")
        pieces = torch.cat([first, second], 1)
        if not torch.allclose(pieces, whole[0], rtol=1e-4, atol=1e-5):
            wrong = (pieces - whole[0]).abs().amax(dim=(0, 2))
            at = int((wrong > 1e-4).nonzero()[0])
            _fail(
                f"extend over a row of {length} in two pieces (split at {k}: {k} then {length - k} characters, rows={rows}) differs "
                f"from extend of the whole row, first at position {at} (max difference {wrong.max().item():.3g}); the second "
                f"extend must continue after the {k} characters its cache holds (positions {k} .. {length - 1})"
            )

    def check_train_step(self) -> None:
        import torch

        from zoo.model import uses_fused_loss
        from zoo.tasks.charlm import loss_fn
        from zoo.trainer import make_optimizer

        model = self.build()
        x, y = self.batch(rows=32, seed=1)
        lr = self.spec.recipe[0].lr
        opt = make_optimizer(self.spec.optimizer, model.parameters(), lr)
        model.eval()
        with torch.no_grad():
            before = loss_fn(self.logits(model, x), y).item()
        model.train()
        fused = uses_fused_loss(model)
        if fused:
            self._check_fused_loss(model, x, y)
        loss = model(x, targets=y) if fused else loss_fn(self.logits(model, x), y)
        extra = getattr(model, "extra_loss", None)  # a regulariser the model computes in forward, as the trainer adds it
        opt.zero_grad()
        (loss if extra is None else loss + extra).backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
        if no_grad:
            _fail(f"these parameters get no gradient from forward, so training never changes them: {', '.join(no_grad)}")
        opt.step()
        model.eval()
        with torch.no_grad():
            after = loss_fn(self.logits(model, x), y).item()
        if not math.isfinite(after) or not after < before:
            _fail(f"one {self.spec.optimizer} step at lr {lr:g} did not lower the loss on a fixed batch ({before:.5f} -> {after:.5f})")

    def _check_fused_loss(self, model: Any, x: Any, y: Any) -> None:
        """forward(x, targets=y) must be the loss the trainer would compute from forward(x), gradients included."""
        import torch

        from zoo.tasks.charlm import loss_fn

        params = [p for p in model.parameters() if p.requires_grad]
        torch.manual_seed(0)  # the same dropout masks, if any, for both calls
        fused = model(x, targets=y)
        if not (isinstance(fused, torch.Tensor) and fused.dim() == 0):
            _fail(f"forward(x, targets=y) of a model with fused_loss must return the loss, a scalar; got {type(fused).__name__}")
        torch.manual_seed(0)
        plain = loss_fn(self.logits(model, x), y)
        if not torch.allclose(fused.float(), plain.float(), rtol=1e-4, atol=1e-5):
            _fail(f"forward(x, targets=y) gives loss {fused.item():.6f} but cross-entropy of forward(x) is {plain.item():.6f}")
        grads = torch.autograd.grad(fused, params, allow_unused=True)
        refs = torch.autograd.grad(plain, params, allow_unused=True)
        for (name, _), a, b in zip([(n, p) for n, p in model.named_parameters() if p.requires_grad], grads, refs):
            a = torch.zeros_like(b) if a is None and b is not None else a
            b = torch.zeros_like(a) if b is None and a is not None else b
            if a is not None and not torch.allclose(a, b, rtol=1e-3, atol=1e-5):
                _fail(f"forward(x, targets=y) gives {name} another gradient than cross-entropy of forward(x)")

    def check_save_load(self) -> None:
        import torch

        from zoo.checkpoint import load_weights, save_weights

        model = self.build(seed=0).eval()
        path = self.workdir / "check-save-load.safetensors"
        save_weights(path, model)
        other = self.build(seed=1).eval()
        load_weights(path, other)
        saved, loaded = model.state_dict(), other.state_dict()
        if list(saved) != list(loaded):
            _fail(f"the loaded state dict has keys {list(loaded)}, the saved one {list(saved)}")
        for key in saved:
            if not torch.equal(saved[key], loaded[key]):
                _fail(f"{key} differs after save -> load")
        x, _ = self.batch()
        if not torch.equal(self.forward(model, x), self.forward(other, x)):
            _fail("the loaded model's outputs differ from the saved model's, though the weights are equal")

    def check_strict_load(self) -> None:
        import torch
        from safetensors.torch import save_file

        from zoo.checkpoint import load_weights

        sd = {k: v.detach().clone().contiguous() for k, v in self.build(seed=0).state_dict().items()}
        key = next((k for k, v in sd.items() if v.dim() >= 1), None)
        if key is None:
            _fail("the state dict has no tensor with a dimension")
        target = self.build(seed=1)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        shape = list(sd[key].shape)
        shape[0] += 1
        bad_cases = {
            "a tensor of the wrong shape": {**sd, key: torch.zeros(shape, dtype=sd[key].dtype)},
            "a missing tensor": {k: v for k, v in sd.items() if k != key},
        }
        path = self.workdir / "check-strict-load.safetensors"
        for what, tensors in bad_cases.items():
            save_file(tensors, str(path))
            try:
                load_weights(path, target)
            except ZooError as exc:
                if key not in str(exc):
                    _fail(f"loading weights with {what} failed, but the error does not name {key}: {exc}")
            else:
                _fail(f"loading weights with {what} ({key}) was accepted; strict loading must reject it")
            after = target.state_dict()
            if any(not torch.equal(before[k], after[k]) for k in before):
                _fail(f"a rejected load (with {what}) changed the model's weights")

    def check_sampling(self) -> None:
        from zoo.sampling import sample, sample_uncached

        model = self.build().eval()
        vocab = self.vocab
        context = self.length if self.spec.batching.kind == "windows" else None
        prompt = next((self.text[i : i + 5] for i in range(len(self.text)) if self.text[i : i + 5].strip()), self.text[:5])
        n = 40

        def run(seed: int) -> list[str]:
            return sample(model, vocab, prompt, n, context=context, temperature=1.0, seed=seed, num_samples=2)

        first, second = run(0), run(0)
        if first == second and self.capabilities(model).sampling == "cache":
            uncached = sample_uncached(model, vocab, prompt, n, context=context, temperature=1.0, seed=0, num_samples=2)
            if uncached != first:
                _fail(
                    "the cached sampler (init_cache/extend) and forward() over the same windows give different text with the "
                    f"same seed: extend does not predict what forward does\n{first!r}\n{uncached!r}"
                )
        if first != second:
            _fail(
                "two samples with the same seed differ: does the model draw random numbers in eval mode "
                f"(dropout with training=True, torch.rand in step)?\n{first!r}\n{second!r}"
            )
        for text in first:
            if len(text) != n:
                _fail(f"asked for {n} characters, got {len(text)}")
            if "\0" in text or vocab.unknown(text):
                _fail(f"the sample has characters outside the vocabulary or the padding: {text!r}")

    def check_num_params(self) -> None:
        from zoo.model import count_params

        s = self.spec
        v = self.vocab_size or self._dataset_vocab_size()
        n = count_params(self.build(hparams=dict(s.hparams), vocab_size=v))
        if s.num_params == n:
            return
        where = f"the ModelSpec of {s.name!r} in {_plugin_file(s.plugin)}"
        if s.num_params is None:
            _fail(f"the spec declares no num_params: add num_params={n} to {where} "
                  f"(the count at its default hyper-parameters and vocabulary {v}; `zoo list` shows it)")  # fmt: skip
        _fail(f"the spec says num_params={s.num_params:,}, but the model has {n:,} at its default hyper-parameters and "
              f"vocabulary {v}: change it to num_params={n} in {where}")  # fmt: skip

    def _dataset_vocab_size(self) -> int:
        """The vocabulary size of the spec's dataset, read only where it needs no network."""
        from zoo import registry
        from zoo.data.vocab import Vocab

        source = registry.get().datasets.get(self.spec.dataset)
        cached = getattr(source, "cached_path", None)
        if source is None or (callable(cached) and not cached().exists()):
            raise _Skip(f"dataset {self.spec.dataset!r} is not available offline; pass vocab_size= to check num_params")
        return len(Vocab.from_text(source.read_text()))

    def check_cli(self) -> None:
        from click.testing import CliRunner

        from zoo import rundir
        from zoo.cli import cli

        s = self.spec
        runner = CliRunner()

        def zoo(*args: str) -> Any:
            result = runner.invoke(cli, list(args), catch_exceptions=True)
            if result.exit_code != 0:
                exc = result.exception
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-4)) if exc else ""
                _fail(f"`zoo {' '.join(args)}` exited {result.exit_code}:\n{result.output[-2000:]}{tb}")
            return result

        info = zoo("info", s.name)
        if not info.stdout.startswith(f"{s.name}: {s.summary}"):
            _fail(f"`zoo info {s.name}` does not start with the name and summary:\n{info.stdout[:500]}")

        data = self.workdir / "tiny.txt"
        data.write_text(self.text, encoding="utf-8")
        out = self.workdir / "run"
        sets = [a for k, v in s.tiny.items() for a in ("--set", f"{k}={v}")]
        trained = zoo("train", s.name, "--epochs", "1", "--data", str(data), "--device", "cpu", "--out", str(out), "--quiet", *sets)
        if "after epoch 1" not in trained.stdout:
            _fail(f"`zoo train {s.name} --epochs 1` did not finish its epoch:\n{trained.output[-2000:]}")
        for fname in (rundir.WEIGHTS, rundir.CONFIG, rundir.TRAINING):
            if not (out / fname).is_file():
                _fail(f"`zoo train` wrote no {fname} in {out}")
        config = rundir.read_config(out)
        if config["model"] != s.name or config["hparams"] != self.hparams:
            _fail(f"the run's config.json has model {config['model']!r}, hparams {config['hparams']}; expected {s.name!r}, {self.hparams}")
        history = rundir.read_history(out)
        if len(history) != 1 or not math.isfinite(history[0]["val_loss"]):
            _fail(f"training.json after one epoch: {history}")

        evaluated = json.loads(zoo("eval", str(out), "--json").stdout)
        if not math.isfinite(evaluated["val_loss"]):
            _fail(f"`zoo eval` gave {evaluated}")

        prompt = next(c for c in self.text if not c.isspace()) * 2
        sampled = [zoo("sample", str(out), "--prompt", prompt, "--length", "30", "--seed", "7").stdout for _ in range(2)]
        if sampled[0] != sampled[1] or not sampled[0].startswith(prompt):
            _fail(f"`zoo sample --seed 7` twice gave different text, or lost the prompt: {sampled!r}")
