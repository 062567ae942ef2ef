"""The "char-lm" task: the next character of a text (cross-entropy in nats/char, accuracy).

Its data path: a text source (zoo.data.sources), its vocabulary, and windows or streams of it
(zoo.data.batching). Its models meet `zoo.model.CharLM`; a trained one is a `LoadedModel`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import math
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import checks, cudagraph, registry
from zoo.checkpoint import tag_vocab
from zoo.data.batching import SPLITS, make_batches, tail_in_order
from zoo.data.sources import recorded_data, resolve
from zoo.data.vocab import Vocab
from zoo.errors import ZooError, ZooWarning
from zoo.model import batching_problem as capability_problem
from zoo.model import build, capabilities
from zoo.options import DEFAULT_VAL_FRAC, DYNAMIC_LR, check_val_frac, percent
from zoo.rundir import read_run
from zoo.runtime import autocast
from zoo.sampling import sample as _sample
from zoo.spec import LESSON_PROMPT, MAX_PROMPT, Batching, ModelSpec, is_prompt
from zoo.tasks.base import Plan, Prepared, Task, TrainedModel


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


def _batch_size(state: Any) -> int:
    return (state[0] if isinstance(state, tuple) else state).shape[0]


def _detach(state: Any) -> Any:
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def forward(model: nn.Module, x: torch.Tensor, state: Any = None, net: nn.Module | None = None) -> tuple[torch.Tensor, Any]:
    """Logits for a batch; a stateful model gets the state the previous batch left (detached: truncated BPTT).

    `net` is what to call when it is not the model itself (its DistributedDataParallel wrapper).
    """
    net = model if net is None else net
    if not getattr(model, "stateful", False):
        return net(x), None
    if state is None or _batch_size(state) != x.shape[0]:
        state = model.init_state(x.shape[0])
    logits, state = net(x, state)
    return logits, _detach(state)


def predicts_every(batching: Batching) -> bool:
    """Whether the loss has a target at every position of a row (streams, "every"), not the next character only."""
    return batching.kind == "streams" or batching.targets == "every"


def logits_shape(batching: Batching, x_shape: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """The logits the loss needs for a batch x of `x_shape` [batch, length]: [batch, length, vocab] when every
    position is a target, [batch, vocab] when only the next character is."""
    return (*x_shape, vocab_size) if predicts_every(batching) else (x_shape[0], vocab_size)


def logits_problem(out: Any, x_shape: tuple[int, ...], batching: Batching, vocab_size: int) -> str | None:
    """What is wrong with `out` as the logits of forward(x) for a batch of `x_shape` (not a tensor, another
    layout than the loss needs), or None. The one shape rule: `zoo train` and the conformance kit both apply it."""
    if not isinstance(out, torch.Tensor):
        return f"forward returned {type(out).__name__}, not a tensor of logits"
    want = logits_shape(batching, x_shape, vocab_size)
    if tuple(out.shape) == want:
        return None
    every = predicts_every(batching)
    targets, layout = ("every position", "[batch, length, vocab]") if every else ("the next character only", "[batch, vocab]")
    return (
        f"forward(x) on x of shape {x_shape} gave logits of shape {tuple(out.shape)}; {batching.kind} batching has targets at "
        f"{targets}, so logits must be {layout} = {want}"
    )


STATEFUL_RESULT = "a stateful model's forward(x, state) must return (logits, new_state)"


@torch.no_grad()
def output_problem(model: nn.Module, x: torch.Tensor, batching: Batching, vocab_size: int) -> str | None:
    """What is wrong with the model's output on the batch `x` (in eval mode, no gradients), or None."""
    was_training = model.training
    model.eval()
    try:
        if getattr(model, "stateful", False):
            result = model(x, model.init_state(x.shape[0]))
            if not (isinstance(result, tuple) and len(result) == 2):
                return STATEFUL_RESULT
            out = result[0]
        else:
            out = model(x)
    finally:
        model.train(was_training)
    return logits_problem(out, tuple(x.shape), batching, vocab_size)


def first_rows(batches: Any, length: int, vocab_size: int) -> torch.Tensor:
    """A few rows of the first training batch: as many as differ from the window `length` and the vocabulary
    size (so that a transposed layout, [length, batch, vocab], cannot pass for the right one)."""
    x, _ = next(iter(batches.epoch()))
    rows = next((n for n in (3, 2, 5, 7) if n not in (length, vocab_size)), 3)
    return x[:rows]


@torch.no_grad()
def evaluate(model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy (nats per character) and accuracy over every target of `batches`."""
    loss, acc, _ = evaluate_targets(model, batches, device, amp)
    return loss, acc


@torch.no_grad()
def evaluate_targets(model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> tuple[float, float, int]:
    """`evaluate`, and how many targets (characters predicted) it averaged over."""
    was_training = model.training
    model.eval()
    total = correct = 0
    loss_sum = 0.0
    state = None  # a stateful model starts evaluation from a zero state and carries it
    try:
        for x, y in batches.epoch():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                logits, state = forward(model, x, state)
            logits = logits.reshape(-1, logits.shape[-1]).float()
            y = y.reshape(-1)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            total += y.numel()
    finally:
        model.train(was_training)
    return loss_sum / max(1, total), correct / max(1, total), total


# Dynamic evaluation (Krause et al. 2018, "Dynamic Evaluation of Neural Sequence Models"): plain SGD on each
# segment's mean loss. Their RMS-normalised rule with decay toward the trained weights needs gradient statistics
# from a pass over the training text (minutes on a CPU) and gains little over SGD on one book's tail, where there
# is no change of topic to decay back from. The learning rate (zoo.options.DYNAMIC_LR) was measured on the bundled
# char-awd-lstm; segments of 64 characters are its own BPTT length, and a step per 64 characters keeps the pass short.
DYNAMIC_SEGMENT = 64


def evaluate_dynamic(model: nn.Module, batches: Any, device: torch.device, lr: float) -> tuple[float, int]:
    """Mean cross-entropy over `batches` (a text's segments in order) while adapting a copy of `model` to it: each
    segment's loss is counted before the SGD step on it, so no character is predicted by weights that learnt it.
    The caller's model is not changed; the copy runs in eval mode (no dropout: the same figure every time)."""
    adapted = copy.deepcopy(model).to(device).eval()
    params = [p for p in adapted.parameters() if p.requires_grad]
    loss_sum, total, state = 0.0, 0, None
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's RNN backward refuses eval mode
        for x, y in batches.epoch():
            x, y = x.to(device), y.to(device)
            logits, state = forward(adapted, x, state)  # a stateful model's state is carried, detached
            loss = loss_fn(logits, y)
            if not math.isfinite(loss.item()):
                raise ZooError(f"dynamic evaluation diverged (loss {loss.item()}); choose a smaller --dynamic-lr than {lr:g}")
            loss_sum += loss.item() * y.numel()
            total += y.numel()
            _sgd_step(params, loss, lr)
    return loss_sum / max(1, total), total


def _sgd_step(params: list[nn.Parameter], loss: torch.Tensor, lr: float) -> None:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p.sub_(g, alpha=lr)


def encode(vocab: Vocab, text: str) -> torch.Tensor:
    """The ids of `text`'s characters: one byte each (four for a vocabulary over 256), made without a Python list,
    whose 8 bytes a character would be the largest cost of reading a corpus."""
    import numpy as np

    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # 4 bytes a character, while encoding
    table = np.full(max(map(ord, vocab.chars)) + 1, -1, dtype=np.int32)  # code point -> id; -1: not in the vocabulary
    table[[ord(c) for c in vocab.chars]] = np.arange(len(vocab), dtype=np.int32)
    ids = table[np.minimum(codes, len(table) - 1)]
    ids[codes >= len(table)] = -1
    if (ids < 0).any():
        vocab.encode(text[int(np.argmax(ids < 0))])  # raises, naming the character
    return torch.from_numpy(ids.astype(np.uint8 if len(vocab) <= 256 else np.int32))


MAX_BATCHING_LENGTH = 1 << 16  # characters in a window or a stream step (zoo's models use 3 to 64)


def batching_problem(batching: dict[str, Any]) -> str | None:
    """What is wrong with a config's batching (its keys, their types and ranges), or None: read before it is used."""
    fields = [f.name for f in dataclasses.fields(Batching)]
    unknown = sorted(set(batching) - set(fields), key=str)
    if unknown:
        return f"unknown key {unknown[0]!r}; known: {', '.join(fields)}"
    given = {**dataclasses.asdict(Batching()), **batching}
    for key, known in (("kind", ("windows", "streams")), ("targets", ("next", "every"))):
        if given[key] not in known:
            return f"unknown {key} {given[key]!r}; known: {', '.join(known)}"
    for key in ("length", "stride"):
        try:
            checks.whole(key, given[key], 1, MAX_BATCHING_LENGTH)
        except ZooError as exc:
            return str(exc)
    return None


PROMPT_FROM_TEXT = len(LESSON_PROMPT)  # characters a default prompt takes from the start of the training text


def default_prompt(spec: ModelSpec, vocab: Vocab, text: str | None = None) -> str:
    """What a model continues when given no prompt: its spec's, else the lesson's, where the vocabulary has their
    characters; else the first characters of `text`'s first line that holds any (the text it trained on), else
    (`text` None: an older config) the vocabulary's first visible character."""
    for candidate in (spec.prompt, LESSON_PROMPT):
        if candidate is not None and not vocab.unknown(candidate):
            return candidate
    if text is not None:
        line = re.search(rf"\S[^\n]{{0,{PROMPT_FROM_TEXT - 1}}}", text[: 1 << 16])  # a text is long: look at its start only
        if line is not None:
            return line.group().rstrip()
    return next((c for c in vocab.chars[1:] if not c.isspace()), vocab.chars[-1])


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass
class CharData:
    """A text and its vocabulary: a char-lm task's `Prepared.detail`."""

    text: str
    vocab: Vocab

    def batches(self, batching: Batching, batch_size: int, split: str, val_frac: float) -> tuple[Any, Any]:
        return make_batches(encode(self.vocab, self.text), batching, batch_size, split, val_frac=val_frac)


class CharLMTask(Task):
    name = "char-lm"  # the registry's name for it; set here too for a Trainer built without one
    unit = "chars"
    loss_label = "cross-entropy (nats/char)"
    columns = (("val_acc", 7, ".3f"),)
    fuses_loss = True
    distributed = True
    own_options = frozenset({"val_frac", "cuda_graph"})

    def plan(self, spec: ModelSpec, opts: Any, base: Plan) -> Plan:
        base.val_frac = DEFAULT_VAL_FRAC if opts.val_frac is None else opts.val_frac
        if base.split not in SPLITS:
            raise ZooError(f"--split {base.split}: unknown (known: {', '.join(SPLITS)})")
        if spec.batching.kind == "streams" and base.split != "tail":  # streams always hold out the end of the text
            why = f"--split {base.split}: {spec.name} reads contiguous streams, so it holds out the end of the text"
            warnings.warn(why, ZooWarning, stacklevel=4)
            base.split = "tail"
        return base

    def prepare(self, spec: ModelSpec, plan: Plan, data: Any, datasets: dict[str, Any]) -> Prepared:
        source = resolve(data, spec.dataset, datasets)
        text = source.read_text()
        vocab = Vocab.from_text(text)
        data_id = recorded_data(source, datasets)  # a registered corpus by its name; a file by its path
        config = {"val_frac": plan.val_frac, "batching": dataclasses.asdict(spec.batching), "vocab": vocab.chars}
        config["prompt"] = default_prompt(spec, vocab, text)  # so that a pulled copy continues what it can
        detail = CharData(text, vocab)
        make = functools.partial(detail.batches, spec.batching, plan.batch_size, plan.split, plan.val_frac)
        return Prepared(source.name, data_id, text_sha256(text), config, detail, make=make)

    def build(self, spec: ModelSpec, hparams: dict[str, Any], config: dict[str, Any]) -> nn.Module:
        vocab = config["vocab"]
        return tag_vocab(build(spec, len(vocab), hparams), vocab)

    def check_model(self, model: nn.Module, spec: ModelSpec, device: torch.device, opts: Any, distributed: bool) -> None:
        if opts.cuda_graph:
            cudagraph.check_usable(device, model, spec.name, distributed)

    def check_output(self, model: nn.Module, spec: ModelSpec, prepared: Prepared, device: torch.device) -> None:
        # First what the model declares: a window longer than its positions would crash forward with a traceback.
        try:
            problem = capability_problem(capabilities(model), spec.batching.kind, spec.batching.length)
        except ZooError as exc:
            problem = str(exc)
        if problem:
            raise ZooError(f"model {spec.name!r} does not fit the char-lm task: {problem}")
        # A wrong layout would either crash in the loss with a long traceback or, transposed ([length, batch,
        # vocab], nn.Transformer's default), train silently to a meaningless loss.
        x = first_rows(prepared.train, spec.batching.length, len(prepared.detail.vocab))
        problem = output_problem(model.to(device), x.to(device), spec.batching, len(prepared.detail.vocab))
        if problem:
            raise ZooError(f"model {spec.name!r} does not fit the char-lm task: {problem}")

    def data_line(self, prepared: Prepared, plan: Plan) -> str:
        d = prepared.detail
        return (
            f"{len(d.text):,} chars, vocab {len(d.vocab)}, {prepared.train.rows:,} training rows, {prepared.val.rows:,} validation rows "
            f"({plan.split} split, {percent(plan.val_frac)} held out)"
        )

    def run_options(self, plan: Plan) -> dict[str, Any]:
        return {"val_frac": plan.val_frac}

    def check_config(self, path: Path, config: dict[str, Any]) -> None:
        for key in ("vocab", "batching"):
            if key not in config:
                raise ZooError(f"{path}: lacks the key {key!r}")
        if not isinstance(config["batching"], dict):
            raise ZooError(f"{path}: 'hparams' and 'batching' must be objects")
        if not isinstance(config["vocab"], list) or not all(isinstance(c, str) for c in config["vocab"]):
            raise ZooError(f"{path}: 'vocab' must be a list of characters")
        try:
            Vocab(config["vocab"])
        except ZooError as exc:
            raise ZooError(f"{path}: {exc}") from None
        problem = batching_problem(config["batching"])
        if problem:
            raise ZooError(f"{path}: 'batching' is not a batching scheme ({problem})")
        prompt = config.get("prompt")  # older configs have none: the model's default is worked out as it loads
        if prompt is not None and (not is_prompt(prompt) or Vocab(config["vocab"]).unknown(prompt)):
            raise ZooError(f"{path}: 'prompt' must be 1 to {MAX_PROMPT} characters of the model's vocabulary")

    def check_against(self, path: Path, config: dict[str, Any], spec: ModelSpec) -> None:
        # The model was built, and its weights trained, for its spec's batching: another kind or targets does not fit
        # its outputs, and another length is another model (and a window of 100,000 makes sampling crawl).
        batching = dataclasses.asdict(Batching(**config["batching"]))
        differ = [f"{k} {v!r} (its spec's: {getattr(spec.batching, k)!r})" for k, v in batching.items() if v != getattr(spec.batching, k)]
        if differ:
            raise ZooError(f"{path}: 'batching' does not match model {spec.name!r}: {', '.join(differ)}")

    def reread(self, spec: ModelSpec, config: dict[str, Any], record: dict[str, Any], datasets: dict[str, Any], run_dir: Path) -> Prepared:
        options = record.get("options", {})
        source = resolve(options["data"], spec.dataset, datasets)
        text = source.read_text()
        if text_sha256(text) != record.get("data_sha256"):
            raise ZooError(f"the data {options['data']!r} changed since the run started; cannot resume {run_dir} exactly")
        vocab = Vocab(config["vocab"])
        detail = CharData(text, vocab)
        batching = Batching(**config["batching"])
        make = functools.partial(detail.batches, batching, options["batch_size"], config["split"], config["val_frac"])
        return Prepared(source.name, config.get("data", ""), record.get("data_sha256", ""), {}, detail, make=make)

    def result(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None) -> TrainedModel:
        return LoadedModel(spec, model, Vocab(config["vocab"]), config, path)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(out, y)

    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        loss, acc = evaluate(model, batches, device, amp)
        return {"val_loss": loss, "val_acc": acc}

    def count(self, x: Any, y: torch.Tensor) -> int:
        return int(x.numel())


class LoadedModel(TrainedModel):
    """A character model with its vocabulary and config, ready to sample and evaluate."""

    def __init__(self, spec: ModelSpec, model: nn.Module, vocab: Vocab, config: dict[str, Any], path: Path | None = None) -> None:
        super().__init__(spec, model, config, path)
        self.vocab = vocab

    @property
    def batching(self) -> Batching:
        return Batching(**self.config["batching"])

    @property
    def context(self) -> int | None:
        """Characters one prediction saw in training (None: the state is carried across batches)."""
        b = self.batching
        return b.length if b.kind == "windows" else None

    @functools.cached_property
    def run_record(self) -> dict[str, Any]:
        """The run's run.json (how it was trained: options, data sha256, versions); {} when the folder has none."""
        return read_run(self.path)

    def _overlap(self, text: str, split: str, val_frac: float) -> str | None:
        """Why evaluating on these rows would be optimistic: they include rows the model trained on. None if not."""
        run_split, run_frac = self.config["split"], self.config["val_frac"]
        if self.batching.kind == "streams":  # streams always hold out the end of the text, whatever the split
            split = run_split = "tail"
        if split == run_split and val_frac <= run_frac:
            return None  # the run's own held-out rows, or a part of them (both splits nest as the fraction shrinks)
        trained_on = self.run_record.get("data_sha256")
        if trained_on is None or text_sha256(text) != trained_on:
            return None  # another text (or a run that did not record its own): no rows in common
        return (
            f"{self.name} held out the {run_split} {percent(run_frac)} of this text in training; the {split} "
            f"{percent(val_frac)} overlaps rows it trained on, so the loss is optimistic"
        )

    def _training_batch_size(self) -> int:
        return int(self.run_record.get("options", {}).get("batch_size") or self.spec.batch_size)

    @property
    def default_prompt(self) -> str:
        """What `sample` continues when given no prompt: the one config.json records (chosen when the model trained,
        so a pulled copy has it too), else (older configs) the spec's or the lesson's where they fit the vocabulary."""
        recorded = self.config.get("prompt")
        return recorded if isinstance(recorded, str) else default_prompt(self.spec, self.vocab)

    def sample(
        self,
        prompt: str | None = None,
        length: int = 400,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
        num_samples: int = 1,
        on_text: Callable[[str], None] | None = None,
    ) -> str | list[str]:
        """Continue `prompt` (None: `default_prompt`) by `length` characters; temperature 0 is greedy. A list if
        num_samples > 1.

        `on_text` (one sample) is handed the text as it is drawn, a few hundred characters at a time."""
        texts = _sample(
            self.model,
            self.vocab,
            self.default_prompt if prompt is None else prompt,
            length,
            context=self.context,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
            num_samples=num_samples,
            on_text=on_text,
        )
        return texts if num_samples > 1 else texts[0]

    def _text(self, data: str | None) -> str:
        """The text to evaluate on (default: the training data), checked against the vocabulary."""
        source = resolve(data if data is not None else self.trained_on(), self.spec.dataset, registry.datasets())
        text = source.read_text()
        unknown = self.vocab.unknown(text)
        if unknown:
            raise ZooError(f"the text has {len(unknown)} characters the model's vocabulary lacks, e.g. {unknown[0]!r}")
        return text

    def _warn_overlap(self, text: str, split: str, val_frac: float) -> None:
        overlap = self._overlap(text, split, val_frac)
        if overlap:
            warnings.warn(overlap, ZooWarning, stacklevel=3)

    def evaluate(
        self, data: str | None = None, split: str | None = None, batch_size: int | None = None, val_frac: float | None = None
    ) -> dict[str, float]:
        """Validation loss (nats/char), bits/char and accuracy on `data` (default: the training data).

        `split` and `val_frac` (the fraction held out) default to the run's own. So does `batch_size` for a
        stateful model, whose held-out text is cut into that many streams (so the figure is its training's);
        windowed models are evaluated 2,048 rows at a time, which does not change the figure.
        """
        if batch_size is None:
            batch_size = self._training_batch_size() if self.batching.kind == "streams" else 2048
        batch_size = checks.whole("--batch-size", batch_size, 1)
        val_frac = check_val_frac(self.config["val_frac"] if val_frac is None else val_frac)
        split = split or self.config["split"]
        text = self._text(data)
        self._warn_overlap(text, split, val_frac)
        _, val = make_batches(encode(self.vocab, text), self.batching, batch_size, split, val_frac=val_frac)
        loss, acc, chars = evaluate_targets(self.model, val, self.device)
        # rows: windows, or a stream model's segments; chars: the characters predicted, comparable across models
        return {"val_loss": loss, "val_bpc": loss / 0.6931471805599453, "val_acc": acc, "chars": chars, "rows": val.rows}

    def check_dynamic(self, lr: float | None = None) -> float:
        """The learning rate of dynamic evaluation (None: the default), checked."""
        return checks.positive("--dynamic-lr", DYNAMIC_LR if lr is None else lr)

    def _scattered_heldout(self, text: str) -> bool:
        """Whether this run held out random windows of `text`: their tail read in order is mostly text it trained on.
        A run that recorded no data is taken to have trained on `text`."""
        if self.config["split"] == "tail" or self.batching.kind == "streams":
            return False
        trained_on = self.run_record.get("data_sha256")
        return trained_on is None or text_sha256(text) == trained_on

    def evaluate_dynamic(
        self, data: str | None = None, val_frac: float | None = None, lr: float = DYNAMIC_LR, segment: int = DYNAMIC_SEGMENT
    ) -> dict[str, float]:
        """Dynamic evaluation: the loss on the held-out tail read in order, `segment` characters at a time, each
        segment scored and then learnt from by one SGD step of `lr` on a copy of the model (this model is unchanged).

        A separate figure from `evaluate`'s, never comparable with the static leaderboard: the model adapts to the
        text it is scored on. Only the "tail" split is read in order; a run held out random windows (scattered
        through the text it trained on) is refused.
        """
        lr = self.check_dynamic(lr)
        segment = checks.whole("segment", segment, 1, MAX_BATCHING_LENGTH)
        val_frac = check_val_frac(self.config["val_frac"] if val_frac is None else val_frac)
        text = self._text(data)
        if self._scattered_heldout(text):
            raise ZooError(
                f"--dynamic reads the held-out tail in order; {self.name} trained on the {self.config['split']} split of this "
                "text, whose held-out windows are scattered through the text it trained on (train it with --split tail)"
            )
        self._warn_overlap(text, "tail", val_frac)
        batches = tail_in_order(encode(self.vocab, text), self.batching, val_frac, segment)
        loss, chars = evaluate_dynamic(self.model, batches, self.device, lr)
        return {
            "dynamic_val_loss": loss,
            "dynamic_val_bpc": loss / math.log(2),
            "dynamic_chars": chars,
            "dynamic_lr": lr,
            "dynamic_segment": segment,
        }
