"""Batching schemes: shapes, input/target alignment, splits, no copies of the corpus."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.data.batching import StreamBatches, make_batches, split_rows, window_starts
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.spec import Batching

CHAR3 = Batching(length=3, stride=3, targets="next")
LOOP = Batching(length=8, stride=1, targets="next")
SEQ = Batching(length=8, stride=8, targets="every")


def corpus(n: int) -> torch.Tensor:
    return torch.arange(n)  # every position distinct: any misalignment shows


def all_rows(batches):
    xs, ys = zip(*batches.epoch(seed=0, epoch=0))
    return torch.cat(xs), torch.cat(ys)


def test_char3_rows_are_the_lessons():
    # lesson: c1 = idx[i], c2 = idx[i+1], c3 = idx[i+2], target idx[i+3], for i in range(0, len-3, 3)
    n = 100
    starts = window_starts(n, CHAR3)
    assert starts.tolist() == list(range(0, n - 3, 3))
    data = corpus(n)
    train, val = make_batches(data, CHAR3, batch_size=7, split="random")
    x, y = all_rows(train)
    assert x.shape[1] == 3
    assert torch.equal(x[:, 1], x[:, 0] + 1) and torch.equal(x[:, 2], x[:, 0] + 2)
    assert torch.equal(y, x[:, 0] + 3)
    assert (x[:, 0] % 3 == 0).all()


def test_loop_windows_every_position_next_char():
    data = corpus(200)
    train, val = make_batches(data, LOOP, batch_size=16, split="random")
    assert train.rows + val.rows == 200 - 8
    x, y = all_rows(train)
    assert x.shape[1:] == (8,) and y.dim() == 1
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert torch.equal(y, x[:, -1] + 1)


def test_seq_windows_target_every_position():
    data = corpus(400)
    train, _ = make_batches(data, SEQ, batch_size=5, split="random")
    x, y = all_rows(train)
    assert x.shape == y.shape and x.shape[1] == 8
    assert torch.equal(y, x + 1)
    assert (x[:, 0] % 8 == 0).all()


def test_random_split_is_fixed_and_disjoint():
    starts = window_starts(1000, LOOP)
    a_train, a_val = split_rows(starts, 1000, LOOP, "random")
    b_train, b_val = split_rows(starts, 1000, LOOP, "random")
    assert torch.equal(a_val, b_val) and torch.equal(a_train, b_train)
    assert len(a_val) == int(len(starts) * 0.2)
    assert not set(a_val.tolist()) & set(a_train.tolist())


def test_tail_split_never_shares_characters():
    n = 1000
    train, val = split_rows(window_starts(n, LOOP), n, LOOP, "tail")
    boundary = int(n * 0.8)
    assert (train + LOOP.length < boundary).all()  # window and its target end before the tail
    assert (val >= boundary).all()


def test_epochs_shuffle_reproducibly_and_resume_mid_epoch():
    data = corpus(500)
    train, _ = make_batches(data, LOOP, batch_size=32, split="random")
    full = [x for x, _ in train.epoch(seed=3, epoch=1)]
    again = [x for x, _ in train.epoch(seed=3, epoch=1)]
    tail = [x for x, _ in train.epoch(seed=3, epoch=1, start_step=4)]
    other = [x for x, _ in train.epoch(seed=3, epoch=2)]
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert all(torch.equal(a, b) for a, b in zip(full[4:], tail)) and len(tail) == len(full) - 4
    assert not torch.equal(full[0], other[0])
    assert len(full) == len(train)


def test_batches_do_not_copy_the_corpus():
    data = (corpus(10_000) % 200).to(torch.uint8)
    train, val = make_batches(data, LOOP, batch_size=512, split="random")
    assert train.data.data_ptr() == data.data_ptr() == val.data.data_ptr()
    assert train.starts.numel() < data.numel()  # one offset per row, not length per row


def test_too_short_text_is_a_clear_error():
    with pytest.raises(ZooError, match="too short"):
        make_batches(corpus(9), LOOP, batch_size=4, split="random")


def test_streams_are_contiguous_and_shifted():
    data = corpus(1001)
    s = StreamBatches(data, length=7, batch_size=4)
    batches = list(s.epoch())
    assert len(batches) == len(s)
    x = torch.cat([b[0] for b in batches], 1)
    y = torch.cat([b[1] for b in batches], 1)
    assert x.shape == (4, 250) and torch.equal(y, x + 1)
    assert torch.equal(x[:, 0], torch.tensor([0, 250, 500, 750]))
    assert batches[-1][0].shape[1] == 250 - 7 * 35  # the last, partial batch is kept


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=12, max_value=400), length=st.integers(1, 10), stride=st.integers(1, 10), every=st.booleans())
def test_any_window_scheme_aligns_inputs_and_targets(n, length, stride, every):
    scheme = Batching(length=length, stride=stride, targets="every" if every else "next")
    data = corpus(n)
    starts = window_starts(n, scheme)
    if len(starts) < 5:
        return
    train, val = make_batches(data, scheme, batch_size=3, split="random")
    for b in (train, val):
        x, y = all_rows(b)
        assert x.shape[1] == length
        if every:
            assert torch.equal(y, x + 1)
        else:
            assert torch.equal(y, x[:, -1] + 1)
        assert int(x.max()) < n and (x[:, 0] % stride == 0).all()


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=1, max_size=200).filter(lambda t: "\0" not in t))
def test_vocab_round_trip(text):
    v = Vocab.from_text(text)
    assert v.chars[0] == "\0" and v.chars[1:] == sorted(set(text))
    assert v.decode(v.encode(text)) == text


def test_vocab_rejects_unknown_characters():
    v = Vocab.from_text("abc")
    with pytest.raises(ZooError, match="not in the model's vocabulary"):
        v.encode("abz")
    assert v.unknown("abzzy") == ["z", "y"]
