"""`zoo explain`: the data side (predictions, hidden states, text features), the CLI's errors, and the models' states()."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_error, zoo_in_process

import zoo
from zoo import explanation, registry
from zoo.model import build

RECURRENT = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity", "char-stateful", "char-gru", "char-lstm",
             "char-awd-lstm"]  # fmt: skip


def _tiny(name: str, vocab: int = 12) -> torch.nn.Module:
    spec = registry.get_model(name)
    torch.manual_seed(0)
    return build(spec, vocab, {**spec.hparams, **spec.tiny}).eval()


# --- the models' states() -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RECURRENT)
def test_states_are_the_states_the_predictions_come_from(name):
    model = _tiny(name)
    x = torch.randint(1, 12, (3, 10))
    with torch.no_grad():
        layers = model.states(x)
        out = model(x, model.init_state(3))[0] if getattr(model, "stateful", False) else model(x)
    assert all(s.shape[:2] == (3, 10) for _, s in layers)
    top = [s for n, s in layers if not n.endswith(".c")][-1]  # the last layer's hidden state feeds the output layer
    expected = model.l_out(top) if out.dim() == 3 else model.l_out(top[:, -1])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["char-lstm", "char-awd-lstm"])
def test_an_lstms_cell_states_end_where_its_forward_leaves_them(name):
    model = _tiny(name)
    x = torch.randint(1, 12, (2, 9))
    with torch.no_grad():
        cells = [s for n, s in model.states(x) if n.endswith(".c")]
        _, state = model(x, model.init_state(2))
    # char-lstm's state: (h, c), each [batch, layers, hidden]; AWD-LSTM's: (h0, c0, h1, c1, ...)
    last = [state[1][:, layer] for layer in range(model.n_layers)] if name == "char-lstm" else list(state[1::2])
    assert len(cells) == len(last) >= 2
    for c, final in zip(cells, last):
        torch.testing.assert_close(c[:, -1], final, atol=1e-5, rtol=1e-5)


# --- predictions: the model's own, the way it was evaluated -------------------------------------------------


class _Stub:
    """What explanation.compute reads of a LoadedModel, around a bare model."""

    def __init__(self, name: str, model: torch.nn.Module, chars: str) -> None:
        from zoo.data.vocab import Vocab

        self.name, self.model, self.spec = name, model, registry.get_model(name)
        self.vocab = Vocab.from_text(chars)
        self.batching = self.spec.batching
        self.num_params = sum(p.numel() for p in model.parameters())
        self.device = torch.device("cpu")

    def trained_on(self) -> str:
        return "a test"


TEXT = 'He said "yes (and no)" to\nthe idea; then\nhe left "at once".'


def _stub(name: str) -> _Stub:
    chars = "".join(sorted(set(TEXT)))
    return _Stub(name, _tiny(name, len(chars) + 1), chars)


def test_a_windowed_model_predicts_each_character_from_the_window_before_it():
    m = _stub("char-rnn")
    result = explanation.compute(m, TEXT, top_k=3)
    ids = torch.tensor(m.vocab.encode(TEXT))
    length = m.batching.length
    assert np.isnan(result.nll[:length]).all() and not np.isnan(result.nll[length:]).any()
    for t in (length, length + 5, len(TEXT) - 1):
        with torch.no_grad():
            logp = torch.log_softmax(m.model(ids[t - length : t][None]), -1)[0]
            state = m.model.states(ids[t - length : t][None])[0][1][0, -1]
        assert result.nll[t] == pytest.approx(-logp[ids[t]].item(), abs=1e-5)
        assert result.rank[t] == int((logp > logp[ids[t]]).sum()) + 1
        assert list(result.top_ids[t]) == logp.topk(3).indices.tolist()
        assert result.top_p[t] == pytest.approx(logp.topk(3).values.exp().tolist(), abs=1e-6)
        np.testing.assert_allclose(result.states[t - 1], state.numpy(), atol=1e-5)  # after reading t - 1, predicting t
    assert np.isnan(result.states[: length - 1]).all() and np.isnan(result.states[-1]).all()


def test_a_stateful_model_reads_the_text_once_carrying_its_state():
    m = _stub("char-lstm")
    result = explanation.compute(m, TEXT)
    ids = m.vocab.encode(TEXT)
    state, nll = m.model.init_state(1), []
    with torch.no_grad():
        for a, b in zip(ids, ids[1:]):
            logits, state = m.model.step(torch.tensor([a]), state)
            nll.append(-torch.log_softmax(logits, -1)[0, b].item())
    np.testing.assert_allclose(result.nll[1:], nll, atol=1e-5)
    assert math.isnan(result.nll[0]) and result.mean_loss == pytest.approx(np.mean(nll), abs=1e-6)
    assert result.units[0] == "lstm0.h:0" and any(u.startswith("lstm1.c:") for u in result.units)


def test_a_model_predicting_every_position_reads_its_own_windows():
    m = _stub("char-seq")
    result = explanation.compute(m, TEXT)
    ids = torch.tensor(m.vocab.encode(TEXT))
    length = m.batching.length
    with torch.no_grad():  # the second window: positions length .. 2 length - 1 predict the characters after them
        logp = torch.log_softmax(m.model(ids[length : 2 * length][None]), -1)[0]
    expected = -logp.gather(1, ids[length + 1 : 2 * length + 1, None])[:, 0]
    np.testing.assert_allclose(result.nll[length + 1 : 2 * length + 1], expected.numpy(), atol=1e-5)


def test_a_model_without_states_gets_its_predictions_and_a_note():
    m = _stub("char-rnn")

    class NoStates(torch.nn.Module):  # the same predictions, without the optional states()
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    m.model = NoStates(m.model)
    result = explanation.compute(m, TEXT)
    assert result.states is None and result.units == []
    assert any("no hidden states" in note for note in result.notes)
    assert not np.isnan(result.nll[-1])
    assert "states" not in explanation.page_data(result)


def test_unknown_characters_are_skipped_shown_and_warned_about_once(capsys):
    m = _stub("char-lstm")
    text = TEXT[:20] + "\u2603\u2603" + TEXT[20:] + "\u00e9"
    result = explanation.compute(m, text)
    err = capsys.readouterr().err
    assert err.count("zoo: warning:") == 1 and "3 characters" in err and "'\u2603'" in err
    assert list(np.flatnonzero(~result.known)) == [20, 21, len(text) - 1]
    assert np.isnan(result.nll[[20, 21]]).all()
    clean = explanation.compute(m, TEXT)  # the model reads the text as if they were not there
    assert result.nll[22] == pytest.approx(clean.nll[20], abs=1e-6)
    assert explanation.page_data(result)["unknown"] == [20, 21, len(text) - 1]


# --- text features and the units that follow them --------------------------------------------------------


def test_the_text_features():
    f = explanation.features('a"b(c)\n"d')
    assert f["inside quotes"][0].tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert f["inside parentheses"][0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert f["position in line"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert f["just after a newline"][0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    values, letters = f["vowel (not consonant)"]
    assert values[letters].tolist() == [1, 0, 0, 0]


def test_a_unit_that_tracks_quotes_is_found():
    text = 'one "two three" four "five" six (seven) eight\n' * 4
    quotes = explanation.features(text)["inside quotes"][0]
    rng = np.random.default_rng(0)
    states = rng.normal(size=(len(text), 5)).astype(np.float32)
    states[:, 3] = np.tanh(2 * quotes - 1 + rng.normal(scale=0.1, size=len(text)))
    states[:2] = np.nan  # no state for the first characters
    r = explanation.correlate(explanation.features(text), states)
    assert np.argmax(np.abs(r["inside quotes"])) == 3 and r["inside quotes"][3] > 0.9
    assert np.abs(r["inside quotes"][[0, 1, 2, 4]]).max() < 0.3


def test_a_page_keeps_the_units_that_follow_a_feature_most_when_there_are_too_many():
    r = {"a": np.array([0.1, -0.9, 0.0, 0.3]), "b": np.array([0.0, 0.0, 0.5, 0.2])}
    assert explanation._strongest(r, 4, 2) == [1, 2]
    assert explanation._strongest(r, 4, 4) == [0, 1, 2, 3]


def test_states_are_packed_a_byte_each_within_their_scale():
    states = np.array([[0.5, -3.0], [np.nan, np.nan], [-1.0, 1.5]], dtype=np.float32)
    packed = explanation._packed_states(states)
    import base64

    q = np.frombuffer(base64.b64decode(packed["states"]), dtype=np.int8).reshape(3, 2)
    assert packed["scale"] == [1.0, 3.0] and q[1].tolist() == [-128, -128]
    np.testing.assert_allclose(q[[0, 2]] / 127 * np.array(packed["scale"]), states[[0, 2]], atol=3 / 127)


def test_the_pages_data_cannot_close_its_script_element():
    raw = explanation.script_json({"text": "</script><script>alert(1)</script>&"})
    assert "<" not in raw and ">" not in raw and "&" not in raw


# --- the command and the Python API -------------------------------------------------------------------------


def test_zoo_explain_writes_one_self_contained_page(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text('The "free spirit" (so called) laughs.\nAnd then he writes. ' * 20, encoding="utf-8")
    out = tmp_path / "page.html"
    code, stdout, err = zoo_in_process(capsys, "explain", "char-rnn", "--text", str(text), "--out", str(out))
    assert code == 0, err
    assert str(out) in stdout and "mean loss" in stdout
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert 'id="unit"' in page and len(page) < 3_000_000


def test_the_python_api_returns_the_explanation_and_writes_the_page(tmp_path):
    out = tmp_path / "p.html"
    result = zoo.explain("char-rnn", "The free spirit laughs at the philosophers.", out=out, top_k=3)
    assert out.exists() and result.top_ids.shape[1] == 3 and result.model == "char-rnn"
    assert 0 < result.mean_loss < 10 and len(result.units) == 256


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["explain", "no-such-model", "--text", "some text here"], "unknown model 'no-such-model'"),
        (["explain", "char-rnn", "--text", ""], "the text is empty"),
        (["explain", "char-rnn", "--text", "x" * (explanation.MAX_TEXT + 1)], "more than the 10,000 zoo explain reads"),
        (["explain", "char-rnn", "--text", "notes.txt"], "--text notes.txt: no such file"),
        (["explain", "char-rnn", "--text", "short"], "char-rnn needs at least 9 to predict one"),
        (["explain", "char-rnn", "--text", "\u2603\u2603\u2603"], "no character of the model's vocabulary"),
        (["explain", "char-rnn", "--text", "some text here", "--top-k", "0"], "--top-k"),
        (["explain", "char-rnn", "--text", "some text here", "--out", "/no/such/folder/p.html"], "no such folder"),
    ],
)
def test_bad_input_is_one_line(capsys, args, says):
    code, _, err = zoo_in_process(capsys, *args)
    assert says in one_error(code, err)


def test_a_text_file_too_large_or_not_text_is_one_line(tmp_path, capsys):
    big = tmp_path / "big.txt"
    big.write_text("a" * (explanation.MAX_TEXT * 4 + 1), encoding="utf-8")
    code, _, err = zoo_in_process(capsys, "explain", "char-rnn", "--text", str(big))
    assert "more than the" in one_error(code, err)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe abc")
    code, _, err = zoo_in_process(capsys, "explain", "char-rnn", "--text", str(binary))
    assert "not valid UTF-8" in one_error(code, err)


def test_nothing_is_written_when_explaining_fails(tmp_path, capsys):
    out = tmp_path / "p.html"
    code, _, err = zoo_in_process(capsys, "explain", "char-rnn", "--text", "short", "--out", str(out))
    assert code != 0 and not out.exists() and list(Path(tmp_path).iterdir()) == []
