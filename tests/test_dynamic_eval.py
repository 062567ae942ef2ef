"""`zoo eval --dynamic`: dynamic evaluation (Krause et al. 2018), a figure apart from the static one.

Tiny models trained in-process on prose whose held-out tail is text they never saw: where adapting to what was
already read must help, where it cannot have helped yet (a segment is scored before it is learnt from), and the
one-line refusals.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from helpers import one_error, write_prose, zoo_in_process

import zoo
from zoo import registry

PHRASE = "zebra quokka vexed the jumpy wizard; "  # words the prose before it never holds
MODELS = ["char-rnn", "char-stateful", "char-seq"]  # windows (next), streams, windows (every position)


def refusal(capsys, *args: str) -> str:
    code, _, err = zoo_in_process(capsys, *args)
    return one_error(code, err)


def tiny(name: str) -> tuple[str, ...]:
    return tuple(f"{k}={v}" for k, v in registry.get_model(name).tiny.items())


def train_on(path, text: str, name: str, split: str = "tail"):
    path.write_text(text, encoding="utf-8")
    out = path.parent / f"run-{name}"
    zoo.train(
        name, data=str(path), split=split, val_frac=0.1, epochs=1, lr=1e-2, batch_size=64, out=out, overrides=tiny(name),
        seed=0, quiet=True,
    )  # fmt: skip
    return out


def prose(tmp_path, chars: int) -> str:
    return write_prose(tmp_path / "prose.txt", chars).read_text(encoding="utf-8")


def repeated_tail(tmp_path) -> str:
    """Prose, then a tenth of the text that repeats a phrase the prose never holds."""
    head = prose(tmp_path, 9_000)
    return head + (PHRASE * 40)[:1_000]


def random_tail(tmp_path, length: int, copies: int) -> str:
    """Prose, then `copies` of the same `length` random characters of its own (nothing a model could have learnt)."""
    head = prose(tmp_path, 9 * length * copies)
    chars = sorted(set(head) - {"\n"})
    piece = "".join(random.Random(0).choice(chars) for _ in range(length))
    return head + piece * copies


@pytest.mark.parametrize("name", MODELS)
def test_adapting_to_a_phrase_never_seen_lowers_the_loss(name, tmp_path):
    out = train_on(tmp_path / "text.txt", repeated_tail(tmp_path), name)
    m = zoo.load(out)
    weights = {k: v.clone() for k, v in m.model.state_dict().items()}
    static = m.evaluate()["val_loss"]
    dynamic = m.evaluate_dynamic(lr=0.5)
    assert dynamic["dynamic_val_loss"] < static - 0.5, (static, dynamic)
    assert m.evaluate_dynamic(lr=0.5) == dynamic  # deterministic: no dropout, the same start every time
    # the caller's model is the trained one still, and so are the weights on disk
    assert all(torch.equal(v, m.model.state_dict()[k]) for k, v in weights.items())
    assert zoo.load(out).evaluate()["val_loss"] == static


@pytest.mark.parametrize("name", MODELS)
def test_a_segment_is_scored_before_it_is_learnt_from(name, tmp_path):
    out = train_on(tmp_path / "text.txt", random_tail(tmp_path, 200, 2), name)
    m = zoo.load(out)
    static = m.evaluate(batch_size=1)  # a stateful model: the tail as one stream, as dynamic evaluation reads it
    # The whole tail as one segment: scored by the trained weights, learnt from only afterwards, so the figure is
    # the static one over the same characters (a step before the scoring would lower it).
    whole = m.evaluate_dynamic(lr=0.5, segment=10_000)
    assert whole["dynamic_chars"] == static["chars"]
    assert whole["dynamic_val_loss"] == pytest.approx(static["val_loss"], rel=1e-4)
    # In segments of one copy: the second copy is scored by weights that learnt the first, and is far likelier.
    halves = m.evaluate_dynamic(lr=0.5, segment=200)
    assert halves["dynamic_val_loss"] < static["val_loss"] - 0.3


def test_the_cli_prints_both_figures_and_json_keeps_the_static_keys(tmp_path, capsys):
    out = train_on(tmp_path / "text.txt", repeated_tail(tmp_path), "char-rnn")
    code, static_json, err = zoo_in_process(capsys, "eval", str(out), "--json")
    assert code == 0, err
    code, both_json, err = zoo_in_process(capsys, "eval", str(out), "--json", "--dynamic", "--dynamic-lr", "0.3")
    assert code == 0, err
    static, both = json.loads(static_json), json.loads(both_json)
    assert {k: both[k] for k in static} == static  # the static figure is unchanged by --dynamic
    assert set(both) - set(static) == {"dynamic_val_loss", "dynamic_val_bpc", "dynamic_chars", "dynamic_lr", "dynamic_segment"}
    assert both["dynamic_lr"] == 0.3 and both["dynamic_val_loss"] < static["val_loss"]
    code, text, err = zoo_in_process(capsys, "eval", str(out), "--dynamic")
    assert code == 0, err
    static_line, dynamic_line = text.strip().splitlines()
    assert static_line.startswith("val_loss ") and dynamic_line.startswith("dynamic: val_loss ")
    assert "not comparable with the static leaderboard" in dynamic_line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--dynamic", "--dynamic-lr", "0"), "--dynamic-lr must be a positive number"),
        (("--dynamic", "--dynamic-lr", "-1"), "--dynamic-lr must be a positive number"),
        (("--dynamic", "--dynamic-lr", "nan"), "--dynamic-lr must be a positive number"),
        (("--dynamic", "--dynamic-lr", "fast"), "'fast' is not a valid float"),
        (("--dynamic-lr", "0.1"), "--dynamic-lr applies with --dynamic only"),
        (("--dynamic", "--split", "random"), "--split random does not apply"),
    ],
)
def test_bad_dynamic_options_are_one_line(args, message, capsys):
    # refused before any text is read: the bundled weights will do
    assert message in refusal(capsys, "eval", "char-awd-lstm", *args)


def test_a_random_split_run_is_refused_on_its_own_text(tmp_path, capsys):
    text = repeated_tail(tmp_path)
    out = train_on(tmp_path / "text.txt", text, "char-rnn", split="random")
    assert "scattered through the text it trained on" in refusal(capsys, "eval", str(out), "--dynamic")
    other = tmp_path / "other.txt"
    other.write_text(text[::-1], encoding="utf-8")  # another text: its tail is unseen, so it may be read in order
    assert zoo.load(out).evaluate_dynamic(data=str(other))["dynamic_chars"] > 0


def test_a_table_model_is_refused(tmp_path, capsys):
    out = tmp_path / "linreg"
    zoo.train("linreg-sgd", seed=0, out=out, device="cpu", quiet=True)
    assert "--dynamic applies to character models only" in refusal(capsys, "eval", str(out), "--dynamic")
