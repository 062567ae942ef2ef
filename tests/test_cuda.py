"""CUDA: the lesson models' training forms, mixed precision, and train -> load -> sample on the GPU.

Skipped where torch sees no CUDA device (CI); run on a GPU machine with `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import registry
from zoo.model import build
from zoo.trainer import loss_fn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]


@pytest.mark.parametrize("name", LESSON)
def test_training_form_equals_the_lessons_code_on_cuda(name):
    spec = registry.get_model(name)
    torch.manual_seed(0)
    model = build(spec, 85).cuda()
    x = torch.randint(0, 85, (64, spec.batching.length), device="cuda")
    fast, lesson = model(x), model.lesson_forward(x)
    torch.testing.assert_close(fast, lesson, rtol=1e-4, atol=1e-4)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(fast.square().mean(), params), torch.autograd.grad(lesson.square().mean(), params)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", LESSON)
def test_a_bf16_autocast_step_on_cuda_is_finite_and_lowers_the_loss(name):
    spec = registry.get_model(name)
    torch.manual_seed(0)
    model = build(spec, 85).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, fused=True)
    x = torch.randint(0, 85, (256, spec.batching.length), device="cuda")
    y = torch.randint(0, 85, (256, spec.batching.length) if spec.batching.targets == "every" else (256,), device="cuda")
    losses = []
    for _ in range(5):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["char-rnn", "char-concat"])
@pytest.mark.parametrize("amp", [False, True])
def test_train_load_and_sample_on_cuda(name, amp, small_corpus, tmp_path):
    out = tmp_path / "run"
    m = zoo.train(name, data=str(small_corpus), device="cuda", out=out, epochs=1, amp=amp, quiet=True)
    assert m.history and m.history[-1]["val_loss"] < 4.0
    loaded = zoo.load(out, device="cuda")
    assert next(loaded.model.parameters()).is_cuda
    a = loaded.sample("the ", length=50, seed=1)
    b = loaded.sample("the ", length=50, seed=1)
    assert a == b and len(a) == 50
