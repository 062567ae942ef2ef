"""`zoo explain`: what a character model predicts at each position of a text, and what its hidden units do there.

`explain(model, text)` loads MODEL as `zoo sample` does (a run folder, a model name with weights, a pulled
OWNER/NAME), reads the text through the model's own prediction path, the way it was trained and evaluated:

- a model of contiguous streams (stateful) reads the whole text once, from its zero state;
- a windowed model predicting every position reads the text cut into its windows, each from the zero state;
- a windowed model predicting the next character only predicts each character from the window of `length`
  characters before it (all windows in one batched forward call, as `zoo eval` does), so the first `length`
  characters have no prediction.

So the page's mean loss is the model's own figure on this text. For each predicted character it keeps -log p
(nats), the top-k predictions with their probabilities, and the rank of the character that came.

Hidden states come from a documented optional method of the model (see `zoo.model`):

    states(x: LongTensor [batch, length]) -> list of (layer name, tensor [batch, length, units])

the state after each character of each row, from the zero state, in one pass of the recurrence. zoo's recurrent
models (plugins zoo_lesson6 and zoo_beyond) have it; a model without it gets the prediction view and a one-line note.
The states shown for a character are those its next prediction came from (for a windowed model, the state at the
end of the window that ends with it). Each unit is correlated with a few features of the text (inside quotes,
inside parentheses, position in the line, just after a newline, vowel against consonant), and the page lists the
units by how strongly they follow each, so "the quote neuron" is one click away.

`write_page` writes one self-contained HTML file: inline CSS, JS and data, no network. Its stable DOM hooks
(for tests and scripts):

    #text span.ch[data-i]       one per character of the text, i its index; class "unk" (not in the vocabulary),
                                "ctx" (no prediction: context only), "sel" (the selected one)
    span.ch[data-v]             after a unit is chosen, the activation its colour shows (3 decimals)
    #topk li[data-char][data-p] the selected character's top-k predictions, probability to 3 decimals;
                                #rank the rank of the character that came, #nll its -log p
    select#unit                 the unit picker: value "" (surprise) or a unit's name, "layer:index"
    #units button[data-unit]    the units ranked by correlation with each text feature
    #mean-loss, #note           the mean loss over the predicted characters; the notes (unknown characters, no states)
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import checks
from zoo.errors import ZooError, warn
from zoo.fileio import atomic_write_bytes, read_bounded

MAX_TEXT = 10_000  # characters explained at once: the page's data (and the time) grow with them
MAX_TOP_K = 20
DEFAULT_TOP_K = 5
MAX_UNITS = 256  # hidden units a page carries: a byte per unit per character (char-rnn's 256 are all shown)
ROWS_PER_CALL = 1024  # windows in one forward call: bounds the memory of a wide model's windows
TEMPLATE = Path(__file__).with_name("explain.html")
_TEXT_SUFFIXES = (".txt", ".md", ".text", ".rst", ".csv")  # --text that names a file, not text, when it is missing


@dataclass
class Explanation:
    """What a model made of a text, character by character (arrays index the text's characters)."""

    model: str
    params: int
    data: str
    text: str
    vocab: list[str]
    known: np.ndarray  # bool [n]: the character is in the model's vocabulary (unknown ones are skipped)
    nll: np.ndarray  # float [n]: -log p of the character (nats), nan where it had no prediction
    rank: np.ndarray  # int [n]: 1 for the likeliest character; 0 where no prediction
    top_ids: np.ndarray  # int [n, k]: the k likeliest next characters (vocabulary ids), -1 where no prediction
    top_p: np.ndarray  # float [n, k]: their probabilities
    units: list[str] = field(default_factory=list)  # "layer:index" of each column of `states`
    states: np.ndarray | None = None  # float32 [n, units]: the state after reading each character; nan where none
    correlations: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> Pearson r per unit
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> np.ndarray:
        return ~np.isnan(self.nll)

    @property
    def mean_loss(self) -> float:
        """Mean -log p over the predicted characters (nats/char)."""
        return float(np.nanmean(self.nll))


def read_text(value: str) -> str:
    """--text FILE_OR_STRING: the file's text when `value` names a file, else `value` itself. A missing file whose
    name looks like one (notes.txt) is an error, not a text to explain."""
    path = Path(value).expanduser()
    if value and len(value) < 4096 and "\n" not in value and path.exists():
        raw = read_bounded(path, MAX_TEXT * 4, "a text file", f" (zoo explain reads at most {MAX_TEXT:,} characters)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ZooError(f"{path}: not valid UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not any(c.isspace() for c in value) and value.lower().endswith(_TEXT_SUFFIXES):
        raise ZooError(f"--text {value}: no such file (to explain this text itself, give it with a space or a newline)")
    return value


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise ZooError(f"the text must be a string, got {type(text).__name__}")
    if not text:
        raise ZooError("the text is empty; give a file or a string with --text")
    if len(text) > MAX_TEXT:
        raise ZooError(f"the text has {len(text):,} characters, more than the {MAX_TEXT:,} zoo explain reads at once; give a part of it")
    return text


def explain(
    model: Any,
    text: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    device: str = "cpu",
) -> Explanation:
    """What `model` (a run folder, a model name with weights, OWNER/NAME pulled, or a loaded model) predicts at each
    character of `text` (a string, or a Path to a text file), with its hidden states where it has them; with `out`,
    the interactive page is written there too."""
    top_k = checks.whole("--top-k", top_k, 1, MAX_TOP_K)
    text = check_text(read_text(os.fspath(text)) if isinstance(text, os.PathLike) else text)
    if out is not None:
        check_out(Path(out))
    m = load_model(model, device)
    result = compute(m, text, top_k)
    if out is not None:
        write_page(result, Path(out))
    return result


def load_model(model: Any, device: str = "cpu") -> Any:
    """A `zoo.tasks.LoadedModel` from what `zoo sample` takes, or the loaded model itself; other tasks refused."""
    from zoo import api
    from zoo.tasks import LoadedModel

    m = model if isinstance(model, LoadedModel) else api.load(model, device)
    if not isinstance(m, LoadedModel):
        raise ZooError(f"zoo explain shows character models; {m.name} is a {m.spec.task} model")
    return m


def compute(m: Any, text: str, top_k: int = DEFAULT_TOP_K, with_states: bool = True) -> Explanation:
    """The Explanation of `text` by the loaded character model `m` (a `zoo.tasks.LoadedModel`)."""
    import torch

    known = np.array([c in m.vocab.stoi and c != "\0" for c in text], dtype=bool)
    ids = torch.tensor([m.vocab.stoi[c] for c, k in zip(text, known) if k], dtype=torch.long, device=m.device)
    reader = _Reader(m.model, m.batching, ids)
    if reader.first_target >= len(ids):
        raise ZooError(_too_short(m, reader, len(ids)))
    _warn_unknown(text, known)
    n, k = len(text), min(top_k, len(m.vocab) - 1)
    where = np.flatnonzero(known)  # text index of each known character
    result = Explanation(
        m.name, m.num_params, m.trained_on(), text, list(m.vocab.chars), known, np.full(n, np.nan), np.zeros(n, dtype=np.int64),
        np.full((n, k), -1, dtype=np.int64), np.zeros((n, k)),
    )  # fmt: skip
    model = m.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            _fill_predictions(result, reader.logits(), ids, where[reader.first_target :], reader.first_target)
            if with_states:
                _fill_states(result, model, reader, where)
    finally:
        model.train(was_training)
    if not known.all():
        result.notes.append(f"{int((~known).sum()):,} characters are not in the model's vocabulary: shown as unknown, and skipped")
    return result


def _warn_unknown(text: str, known: np.ndarray) -> None:
    if known.all():
        return
    unknown = list(dict.fromkeys(c for c, k in zip(text, known) if not k))
    shown = " ".join(repr(c) for c in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    warn(
        f"{int((~known).sum()):,} characters of the text ({len(unknown)} distinct: {shown}) are not in the model's vocabulary; "
        "the page shows them as unknown, and the model skips them"
    )


def _too_short(m: Any, reader: _Reader, have: int) -> str:
    if have == 0:
        return "the text has no character of the model's vocabulary"
    need = reader.first_target + 1
    return f"the text has {have} characters the model knows; {m.name} needs at least {need} to predict one"


class _Reader:
    """The model's own prediction path over the text's ids (see the module's docstring)."""

    def __init__(self, model: Any, batching: Any, ids: Any) -> None:
        from zoo.model import capabilities
        from zoo.tasks.charlm import predicts_every

        self.model, self.ids = model, ids
        self.stateful = capabilities(model).stateful
        self.length = batching.length
        self.every = self.stateful or predicts_every(batching)
        # The first character with a prediction: after one character, or after a whole window
        self.first_target = 1 if self.every else self.length

    def rows(self) -> list[Any]:
        """The inputs, in order: [1, n-1] for a stateful model; windows of `length` (the last shorter) for one that
        predicts every position; for one that predicts the next character only, every window, in batches."""
        x = self.ids[:-1]
        if self.stateful:
            return [x[None]]
        if self.every:
            return list(x.split(self.length))
        windows = x.unfold(0, self.length, 1)  # windows[j] = ids[j : j + length], predicting ids[j + length]
        return list(windows.split(ROWS_PER_CALL))

    def logits(self) -> Any:
        """Logits [n - first_target, vocab], one per predicted character, in order."""
        import torch

        parts = []
        for x in self.rows():
            if self.stateful:
                out = self.model(x, self.model.init_state(1))[0][0]
            elif self.every:
                out = self.model(x[None])[0]
            else:
                out = self.model(x)
            parts.append(out.float())
        return torch.cat(parts)

    def states(self) -> list[tuple[str, Any]]:
        """Each layer's states [n - first_target, units], the state after each character whose next one is predicted."""
        import torch

        layers: dict[str, list[Any]] = {}
        for x in self.rows():
            for name, s in self.model.states(x[None] if self.every and not self.stateful else x):
                s = s[0] if self.every else s[:, -1]
                layers.setdefault(str(name), []).append(s.float())
        return [(name, torch.cat(parts)) for name, parts in layers.items()]


def _fill_predictions(result: Explanation, logits: Any, ids: Any, where: np.ndarray, first: int) -> None:
    import torch

    if not torch.isfinite(logits).all():
        raise ZooError("the model's predictions are not finite numbers (nan or inf); its weights may be broken")
    logp = torch.log_softmax(logits, -1)
    targets = ids[first:]
    nll = -logp.gather(1, targets[:, None])[:, 0]
    rank = (logp > logp.gather(1, targets[:, None])).sum(1) + 1
    top = logp.topk(result.top_ids.shape[1], -1)
    result.nll[where] = nll.double().cpu().numpy()
    result.rank[where] = rank.cpu().numpy()
    result.top_ids[where] = top.indices.cpu().numpy()
    result.top_p[where] = top.values.exp().double().cpu().numpy()


def _fill_states(result: Explanation, model: Any, reader: _Reader, where: np.ndarray) -> None:
    if not callable(getattr(model, "states", None)):  # the documented optional method; not every model has states
        result.notes.append(f"{result.model} has no hidden states to show (no states() method): the page shows its predictions only")
        return
    layers = reader.states()
    # state i follows the known character i + first - 1, whose next character is predicted
    rows = where[reader.first_target - 1 : len(where) - 1]
    names = [f"{name}:{i}" for name, s in layers for i in range(s.shape[1])]
    values = np.concatenate([s.cpu().numpy() for _, s in layers], 1)
    if len(values) != len(rows):
        raise ZooError(f"{result.model}: states() gave {len(values)} states for {len(rows)} characters; see zoo.model for what it returns")
    states = np.full((len(result.text), values.shape[1]), np.nan, dtype=np.float32)
    states[rows] = values
    correlations = correlate(features(result.text), states)
    keep = _strongest(correlations, states.shape[1], MAX_UNITS)
    if len(keep) < states.shape[1]:
        result.notes.append(f"showing {len(keep)} of {states.shape[1]:,} units: those that follow a text feature most strongly")
    result.units = [names[i] for i in keep]
    result.states = states[:, keep]
    result.correlations = {name: r[keep] for name, r in correlations.items()}


# --- text features ---------------------------------------------------------------------------------------------

VOWELS = frozenset("aeiouAEIOU")


def features(text: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Simple features of the text after each character is read: name -> (values [n], where the feature applies)."""
    n = len(text)
    chars = np.array(list(text)) if n else np.array([], dtype="<U1")
    everywhere = np.ones(n, dtype=bool)
    quotes = np.cumsum(np.isin(chars, ['"', "\u201c", "\u201d"])) % 2  # inside after an opening quote, until its close
    depth = _paren_depth(text)
    letters = np.array([c.isalpha() for c in text], dtype=bool)
    return {
        "inside quotes": (quotes.astype(float), everywhere),
        "inside parentheses": ((depth > 0).astype(float), everywhere),
        "position in line": (_column(text).astype(float), everywhere),
        "just after a newline": ((chars == "\n").astype(float), everywhere),
        "vowel (not consonant)": (np.isin(chars, list(VOWELS)).astype(float), letters),
    }


def _paren_depth(text: str) -> np.ndarray:
    depth, out = 0, np.zeros(len(text))
    for i, c in enumerate(text):
        depth = depth + 1 if c == "(" else max(0, depth - 1) if c == ")" else depth
        out[i] = depth
    return out


def _column(text: str) -> np.ndarray:
    """Each character's index in its line (a newline ends its line: its column is the line's length)."""
    out, col = np.zeros(len(text)), 0
    for i, c in enumerate(text):
        out[i] = col
        col = 0 if c == "\n" else col + 1
    return out


def correlate(feats: dict[str, tuple[np.ndarray, np.ndarray]], states: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson r of each unit (column of `states`, nan where no state) with each feature, where both are defined;
    0 where either is constant there."""
    has_state = ~np.isnan(states[:, 0]) if states.shape[1] else np.zeros(len(states), dtype=bool)
    everywhere = _centred(states[has_state])  # most features apply everywhere: the states are centred once for them
    out = {}
    for name, (values, applies) in feats.items():
        rows = has_state & applies
        if rows.sum() < 2:
            out[name] = np.zeros(states.shape[1])
            continue
        s = everywhere if applies.all() else _centred(states[rows])
        out[name] = _pearson(values[rows], s)
    return out


def _centred(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states less their mean, and each unit's root sum of squares."""
    c = s - s.mean(0, dtype=np.float64).astype(np.float32)
    return c, np.sqrt(np.einsum("ij,ij->j", c, c, dtype=np.float64))


def _pearson(v: np.ndarray, centred: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    s, norms = centred
    v = (v - v.mean()).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (v @ s).astype(np.float64) / (np.sqrt(float(v @ v)) * norms)
    return np.nan_to_num(r)


def _strongest(correlations: dict[str, np.ndarray], units: int, limit: int) -> list[int]:
    """The units to keep, in their own order: all when they are few, else the `limit` most correlated with a feature."""
    if units <= limit:
        return list(range(units))
    strength = np.max(np.abs(np.stack(list(correlations.values()))), 0)
    return sorted(np.argsort(-strength, kind="stable")[:limit].tolist())


# --- the page --------------------------------------------------------------------------------------------------


def page_data(result: Explanation) -> dict[str, Any]:
    """What the page's script reads: plain JSON (probabilities to 3 decimals, as the page shows them)."""
    predicted = result.predicted
    data: dict[str, Any] = {
        "model": result.model,
        "params": result.params,
        "data": result.data,
        "text": result.text,
        "vocab": result.vocab,
        "meanLoss": round(result.mean_loss, 4),
        "predicted": int(predicted.sum()),
        "unknown": np.flatnonzero(~result.known).tolist(),
        "nll": [round(float(v), 4) if p else None for v, p in zip(result.nll, predicted)],
        "rank": result.rank.tolist(),
        "top": [ids.tolist() if p else None for ids, p in zip(result.top_ids, predicted)],
        "topP": [[round(float(x), 3) for x in ps] if p else None for ps, p in zip(result.top_p, predicted)],
        "notes": result.notes,
        "units": result.units,
    }
    if result.states is not None and result.units:
        data.update(_packed_states(result.states))
        data["features"] = {name: _ranked(r) for name, r in result.correlations.items()}
    return data


def _packed_states(states: np.ndarray) -> dict[str, Any]:
    """States as one signed byte each (base64, character-major), scaled per unit to ±max(1, its largest |value|):
    tanh units keep their ±1 range; cell states their own. -128 marks a character without a state."""
    scale = np.maximum(1.0, np.nan_to_num(np.nanmax(np.abs(states), 0), nan=1.0))
    q = np.round(np.nan_to_num(states / scale, nan=0.0) * 127).astype(np.int8)
    q[np.isnan(states)] = -128
    return {"scale": [round(float(s), 4) for s in scale], "states": base64.b64encode(q.tobytes()).decode("ascii")}


def _ranked(r: np.ndarray, top: int = 6) -> list[list[Any]]:
    order = np.argsort(-np.abs(r), kind="stable")[:top]
    return [[int(i), round(float(r[i]), 3)] for i in order if r[i] != 0]


def script_json(obj: Any) -> str:
    """JSON safe inside <script>: every '<', '>' and '&' escaped, so no text can close the element."""
    raw = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return raw.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(result: Explanation) -> str:
    """The page, as one string of HTML."""
    template = TEMPLATE.read_text(encoding="utf-8")
    title = f"zoo explain: {result.model}"
    return template.replace("{{title}}", html.escape(title)).replace("{{data}}", script_json(page_data(result)))


def check_out(path: Path) -> None:
    """Refuse an --out the page cannot be written to, before any work is done."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ZooError(f"--out {path}: is a folder; give a file name such as {path / 'explain.html'}")
    if not path.parent.is_dir():
        raise ZooError(f"--out {path}: no such folder {path.parent}")


def write_page(result: Explanation, path: Path) -> Path:
    """The page written whole (never half a file) at `path`; its folder must exist."""
    path = Path(path).expanduser()
    check_out(path)
    try:
        atomic_write_bytes(path, render(result).encode("utf-8"))
    except OSError as exc:
        raise ZooError(f"--out {path}: cannot be written ({exc.strerror or exc})") from None
    return path


# --- zoo compare's page: the leaderboard, and one text coloured by each model's surprise -----------------------

MAX_NLL_SHOWN = 6.0  # nats: the top of the surprise scale (the page's script uses the same)
COMPARE_SAMPLE = 600  # characters of held-out text each model colours on compare.html


def surprise_colour(nll: float) -> str:
    """The page's colour for -log p (nats): pale yellow (expected) to red (surprised); explain.html's surpriseColour."""
    t = min(nll / MAX_NLL_SHOWN, 1.0)
    return f"hsl({60 - 60 * t:.1f},100%,{97 - 45 * t:.1f}%)"


def coloured_text(result: Explanation) -> str:
    """The text as HTML spans coloured by surprise, each titled with its -log p (no script needed)."""
    parts = []
    for i, c in enumerate(result.text):
        glyph = html.escape("\u21b5\n" if c == "\n" else c)
        if not result.known[i]:
            parts.append(f'<span class="ch unk" data-i="{i}" title="not in the vocabulary">{glyph}</span>')
        elif np.isnan(result.nll[i]):
            parts.append(f'<span class="ch ctx" data-i="{i}">{glyph}</span>')
        else:
            nll = float(result.nll[i])
            parts.append(
                f'<span class="ch" data-i="{i}" data-nll="{nll:.3f}" style="background:{surprise_colour(nll)}" '
                f'title="-log p {nll:.3f}, rank {result.rank[i]}">{glyph}</span>'
            )
    return "".join(parts)


COMPARE_STYLE = """
body { margin: 0; padding: 12px 18px; font: 15px/1.45 system-ui, sans-serif; color: #1b1b1b; }
h1 { font-size: 1.15rem; margin: 0 0 8px; } h2 { font-size: 1rem; margin: 16px 0 6px; }
table { border-collapse: collapse; font-size: .9rem; } th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:nth-child(2), td:nth-child(2) { text-align: left; }
.models { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px; }
.model { border: 1px solid #ddd; border-radius: 4px; padding: 8px; min-width: 0; }
.model h3 { font-size: .95rem; margin: 0 0 4px; }
.text { font: 13px/1.6 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all; }
.ctx { color: #999; } .unk { color: #a00; outline: 1px dashed #a00; }
.legend { display: inline-block; width: 140px; height: 12px; vertical-align: middle; border: 1px solid #ddd; }
.muted { color: #666; font-size: .9rem; }
"""


def render_compare(title: str, table: list[dict[str, Any]], results: list[Explanation], note: str) -> str:
    """compare.html: the leaderboard (rows of column -> value, in order), then the same text coloured by each model's
    surprise, side by side. Static HTML: no script, no network."""
    heads = list(table[0]) if table else []
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>" for row in table)
    columns = "".join(
        f'<div class="model" data-model="{html.escape(r.model)}"><h3>{html.escape(r.model)}</h3>'
        f'<div class="muted">{r.mean_loss:.3f} nats/char on this text</div><div class="text">{coloured_text(r)}</div></div>'
        for r in results
    )
    scale = ",".join(surprise_colour(x) for x in range(int(MAX_NLL_SHOWN) + 1))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        'initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
        f"<title>{html.escape(title)}</title><style>{COMPARE_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<table id="leaderboard"><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in heads)}</tr></thead>'
        f"<tbody>{rows}</tbody></table><h2>The same text, coloured by each model's surprise</h2>"
        f'<p class="muted">{html.escape(note)} &middot; surprise &minus;log p: 0 '
        f'<span class="legend" style="background:linear-gradient(to right,{scale})"></span> {MAX_NLL_SHOWN:g}+ nats '
        f"&middot; hover a character for its &minus;log p and rank</p>"
        f'<div class="models">{columns}</div></body></html>\n'
    )
