"""zoo.cudagraph's bookkeeping, on the CPU: which steps run as usual, which are captured and replayed.

A CUDA graph needs a GPU (tests/test_cuda.py trains with real ones there). Here a stand-in capture
keeps the same contract (capturing runs nothing; each replay runs the recorded step on the graph's
input buffers and returns its loss), so a graphed run that skipped, doubled or misfed a step would
end with other weights than the plain run on the same batches.
"""

from __future__ import annotations

import pytest
import torch
from helpers import one_line_error, run_zoo

import zoo
from zoo import cudagraph, registry
from zoo.cudagraph import GraphedSteps
from zoo.errors import ZooError
from zoo.model import build
from zoo.trainer import make_optimizer


def replay_by_calling(fn):
    """Capture stand-in: records fn without running it; a replay runs it."""
    return fn


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = build(registry.get_model("char-concat"), 20, {"n_hidden": 16, "n_fac": 4})
    return model, make_optimizer("adam", model.parameters(), 1e-2)


def _step_of(model, opt):
    def step(x, y):
        loss = model(x, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _batches():
    """Full batches of 8 rows, an epoch's short last one, then a new learning rate (None: keep it)."""
    g = torch.Generator().manual_seed(1)
    rows = [8] * 6 + [5] + [8] * 5
    lrs = [None] * 7 + [3e-3] + [None] * 4
    return [(torch.randint(0, 20, (n, 8), generator=g), torch.randint(0, 20, (n,), generator=g), lr) for n, lr in zip(rows, lrs)]


def _train(run_step, opt):
    losses = []
    for x, y, lr in _batches():
        if lr is not None:
            for group in opt.param_groups:
                group["lr"] = lr
        losses.append(run_step(x, y).item())
    return losses


def test_graphed_steps_take_the_same_steps_as_plain_ones():
    model, opt = _model_and_optimizer()
    plain = _train(_step_of(model, opt), opt)
    graphed_model, graphed_opt = _model_and_optimizer()
    steps = GraphedSteps(_step_of(graphed_model, graphed_opt), graphed_opt, capture=replay_by_calling, side_stream=False)
    graphed = _train(steps, graphed_opt)
    assert graphed == plain
    for a, b in zip(model.parameters(), graphed_model.parameters()):
        assert torch.equal(a, b)
    # 3 warm-up steps, captured; 3 replays; the short batch as usual; the new learning rate drops the graph:
    # 3 more warm-up steps, a new capture, 2 replays.
    assert (steps.captures, steps.replays) == (2, 5)


def test_a_replay_reads_each_new_batch():
    model, opt = _model_and_optimizer()
    steps = GraphedSteps(_step_of(model, opt), opt, warmup=1, capture=replay_by_calling, side_stream=False)
    x, y = torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, dtype=torch.long)
    steps(x, y)  # runs as usual, then captured
    first = steps(x, y).item()
    second = steps(x + 3, y + 5).item()  # a replay fed the old buffers would give about the same loss
    assert steps.replays == 2 and abs(first - second) > 0.1


def test_the_optimizer_is_capturable_only_while_captured():
    model, opt = _model_and_optimizer()
    seen = []

    def capture(fn):
        seen.append([group["capturable"] for group in opt.param_groups])
        return fn

    steps = GraphedSteps(_step_of(model, opt), opt, warmup=1, capture=capture, side_stream=False)
    steps(torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    assert seen == [[True]]
    assert [group["capturable"] for group in opt.param_groups] == [False]  # as checkpoints record it


def test_a_step_that_cannot_be_captured_is_one_clear_error():
    model, opt = _model_and_optimizer()

    def capture(fn):
        raise RuntimeError(
            "CUDA error: operation not permitted when stream is capturing\n"
            "CUDA kernel errors might be asynchronously reported at some other API call"
        )

    steps = GraphedSteps(_step_of(model, opt), opt, warmup=1, capture=capture, side_stream=False)
    with pytest.raises(ZooError, match="cannot be captured as a CUDA graph .*operation not permitted") as caught:
        steps(torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    assert "\n" not in str(caught.value)  # the CLI prints it as one line


def test_only_optimizers_that_never_wait_for_the_gpu_are_captured():
    model = torch.nn.Linear(2, 2)
    cudagraph.check_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    cudagraph.check_optimizer(torch.optim.Adam(model.parameters(), fused=True))
    with pytest.raises(ZooError, match="fused Adam or SGD"):
        cudagraph.check_optimizer(torch.optim.Adam(model.parameters()))


def test_cuda_graph_needs_cuda_one_process_and_no_carried_state():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ZooError, match="needs a CUDA device; this run trains on cpu"):
        cudagraph.check_usable(torch.device("cpu"), model, "m")
    with pytest.raises(ZooError, match="not under torchrun"):
        cudagraph.check_usable(torch.device("cuda"), model, "m", distributed=True)
    model.stateful = True
    with pytest.raises(ZooError, match="m carries its state"):  # said first: no device would change it
        cudagraph.check_usable(torch.device("cpu"), model, "m")
    cudagraph.check_usable(torch.device("cuda"), torch.nn.Linear(2, 2), "m")  # nothing to say


def test_the_trainer_with_graphs_trains_exactly_as_without(small_corpus, tmp_path, monkeypatch):
    """Whole epochs through zoo.train: the short last batch, a learning rate per epoch, the loss read per step."""
    plain = zoo.train("char-loop", data=str(small_corpus), epochs=3, out=tmp_path / "plain", quiet=True, device="cpu")
    made = []

    def graphed(step, opt):
        made.append(GraphedSteps(step, opt, capture=replay_by_calling, side_stream=False))
        return made[-1]

    monkeypatch.setattr("zoo.trainer.GraphedSteps", graphed)
    monkeypatch.setattr("zoo.trainer.check_usable", lambda *a: None)
    monkeypatch.setattr("zoo.cudagraph.check_usable", lambda *a: None)
    run = zoo.train("char-loop", data=str(small_corpus), epochs=3, out=tmp_path / "graphed", quiet=True, device="cpu", cuda_graph=True)
    steps = made[0]
    assert steps.replays > 0 and steps.captures == len({h["lr"] for h in run.history})  # a graph per learning rate
    assert [h["trn_loss"] for h in run.history] == [h["trn_loss"] for h in plain.history]
    assert [h["val_loss"] for h in run.history] == [h["val_loss"] for h in plain.history]
    for a, b in zip(plain.model.parameters(), run.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "args, message",
    [
        (["char-rnn", "--cuda-graph", "--data", "pydoc-topics"], "--cuda-graph needs a CUDA device; this run trains on cpu"),
        (["entity-embeddings", "--cuda-graph"], "--cuda-graph applies to character models only"),
        (["char-stateful", "--cuda-graph", "--data", "pydoc-topics"], "char-stateful carries its state from batch to batch"),
    ],
)
def test_cuda_graph_refused_in_one_line_before_any_file_is_written(args, message, tmp_path):
    out = tmp_path / "run"
    proc = run_zoo("train", *args, "--device", "cpu", "--max-steps", "1", "--out", str(out))
    assert proc.returncode == 1
    assert message in one_line_error(proc)
    assert not out.exists()


def test_resume_takes_cuda_graph_and_checks_it(small_corpus, tmp_path):
    out = tmp_path / "run"
    zoo.train("char3", data=str(small_corpus), max_steps=2, out=out, quiet=True, device="cpu")
    proc = run_zoo("train", "--resume", str(out), "--cuda-graph", "--device", "cpu")
    assert proc.returncode == 1
    assert "--cuda-graph needs a CUDA device" in one_line_error(proc)
