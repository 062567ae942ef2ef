"""CUDA: the lesson models' training forms, mixed precision, and train -> load -> sample on the GPU.

Skipped where torch sees no CUDA device (CI); run on a GPU machine with `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo import registry
from zoo.model import build
from zoo.tasks.charlm import loss_fn

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


@pytest.mark.parametrize("name", LESSON)
@pytest.mark.parametrize("amp", [False, True])
def test_a_captured_step_replays_exactly_the_plain_steps_on_cuda(name, amp):
    """zoo.cudagraph with real CUDA graphs, steps as the trainer takes them (batches of 512, the model's fused
    loss): the same batches give the same losses and weights as plain steps."""
    from zoo.cudagraph import GraphedSteps
    from zoo.model import uses_fused_loss
    from zoo.trainer import make_optimizer

    spec = registry.get_model(name)
    every = spec.batching.targets == "every"
    g = torch.Generator().manual_seed(0)
    batches = []
    for n in [512] * 6 + [300] + [512] * 3:  # an epoch's short last batch in between
        x = torch.randint(0, 85, (n, spec.batching.length), generator=g)
        batches.append((x.cuda(), torch.randint(0, 85, x.shape if every else (n,), generator=g).cuda()))

    def run(graphed):
        torch.manual_seed(0)
        model = build(spec, 85).cuda()
        opt = make_optimizer("adam", model.parameters(), 3e-3)

        def step(x, y):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp, cache_enabled=False):
                loss = model(x, targets=y) if uses_fused_loss(model) else loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.detach()

        steps = GraphedSteps(step, opt) if graphed else step
        losses = [steps(x, y).item() for x, y in batches]
        return losses, list(model.parameters()), steps

    plain_losses, plain_params, _ = run(False)
    losses, params, steps = run(True)
    assert steps.captures == 1 and steps.replays == 6
    # Equal but for the order of atomic additions (index_add_ on CUDA); a skipped or doubled Adam step of 3e-3 is far outside.
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), rtol=1e-4, atol=1e-5)
    for a, b in zip(params, plain_params):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", ["char-rnn", "char-concat"])
def test_train_with_cuda_graph_then_sample(name, small_corpus, tmp_path):
    plain = zoo.train(name, data=str(small_corpus), device="cuda", out=tmp_path / "plain", epochs=2, amp=False, quiet=True)
    m = zoo.train(name, data=str(small_corpus), device="cuda", out=tmp_path / "run", epochs=2, amp=False, quiet=True, cuda_graph=True)
    for a, b in zip(m.history, plain.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-3)
    loaded = zoo.load(tmp_path / "run", device="cuda")
    assert len(loaded.sample("the ", length=50, seed=1)) == 50
