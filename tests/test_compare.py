"""`zoo compare`: same budget for every model, a leaderboard on a leak-free tail, reuse of finished runs."""

from __future__ import annotations

import json

import pytest
from helpers import run_zoo

from zoo import compare
from zoo.errors import ZooError


def test_compare_ranks_models_and_reuses_finished_runs(small_corpus, tmp_path):
    out = tmp_path / "cmp"
    entries = compare.compare("char-s*", budget=1.2, data=str(small_corpus), device="cpu", out=out)
    assert {e.model for e in entries} == {"char-seq", "char-seq-identity", "char-stateful"}
    losses = [e.val_loss for e in entries]
    assert losses == sorted(losses)  # the leaderboard is ranked by held-out loss
    for e in entries:
        assert e.val_loss > 0 and abs(e.val_bpc - e.val_loss / 0.6931471805599453) < 1e-9
        assert len(e.curve) == compare.CHUNKS and 0 < e.curve[0][0] < e.curve[-1][0]  # training seconds, rising
        assert (out / e.model / "compare.json").exists()
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    page = (out / "compare.html").read_text(encoding="utf-8")  # the leaderboard and each model's surprise, side by side
    assert all(f'data-model="{e.model}"' in page and f"<td>{e.val_loss:.4f}</td>" in page for e in entries)
    stamp = (out / entries[0].model / "model.safetensors").stat().st_mtime_ns
    again = compare.compare("char-s*", budget=1.2, data=str(small_corpus), device="cpu", out=out)
    assert [e.val_loss for e in again] == [e.val_loss for e in entries]
    assert (out / entries[0].model / "model.safetensors").stat().st_mtime_ns == stamp  # not trained again


def test_an_interrupted_compare_says_to_rerun_it_not_to_resume_the_run(small_corpus, tmp_path, monkeypatch):
    from zoo import api
    from zoo.trainer import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("interrupted at epoch 1, batch 3; checkpoint saved", "Continue with: zoo train --resume x")

    monkeypatch.setattr(api, "train", interrupted)
    with pytest.raises(TrainingInterrupted) as info:
        compare.compare("char-rnn", budget=1, data=str(small_corpus), device="cpu", out=tmp_path / "cmp")
    said = str(info.value)
    assert said.startswith("interrupted at epoch 1, batch 3; checkpoint saved. ") and "zoo train --resume" not in said
    assert said.endswith("Continue the comparison by running the same zoo compare again")


def test_compare_cli_json(small_corpus, tmp_path):
    proc = run_zoo(
        "compare", "char-r*", "--budget", "1", "--data", str(small_corpus), "--device", "cpu", "--out", str(tmp_path / "c"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["model"] for r in rows] == ["char-rnn"]
    assert rows[0]["params"] > 0 and rows[0]["reference"] is None  # the lesson's 1.547 is for Nietzsche, not this text
    record = json.loads((tmp_path / "c" / "char-rnn" / "run.json").read_text())
    assert record.get("resumes", []) == []  # compare's chunks resume the run: no `zoo compare` posing as a resume command
    bad = run_zoo("compare", "nothing*", "--budget", "1")
    assert bad.returncode != 0 and "no character models match" in bad.stderr


def test_compare_records_its_schedule_compactly_and_resumes_from_it(small_corpus, tmp_path):
    """Compare asks for 1,000 epochs (its budget ends training); run.json says so without a 1,000-entry list."""
    out = tmp_path / "c"
    (entry,) = compare.compare("char-rnn", budget=0.4, data=str(small_corpus), device="cpu", out=out)
    assert len(entry.curve) == compare.CHUNKS  # every chunk after the first resumed the run from its run.json
    options = json.loads((out / "char-rnn" / "run.json").read_text())["options"]
    assert options["epoch_lrs"] == [1e-3] and options["epochs"] == 1000


def test_compare_refuses_a_run_made_for_another_budget_or_data(small_corpus, tmp_path):
    """A finished (or interrupted) comparison run is reused only for the same budget and data, never silently."""
    out = tmp_path / "c"
    (first,) = compare.compare("char-rnn", budget=0.4, data=str(small_corpus), device="cpu", out=out)
    other = tmp_path / "other.txt"
    other.write_text(small_corpus.read_text()[::-1], encoding="utf-8")
    for kwargs, message in (({"budget": 0.8}, "a 0.4 s budget, not 0.8 s"), ({"data": str(other)}, "data")):
        args = {"budget": 0.4, "data": str(small_corpus), **kwargs}
        with pytest.raises(ZooError, match=f"holds a comparison run made with {message}"):
            compare.compare("char-rnn", device="cpu", out=out, **args)
    (out / "char-rnn" / "compare.json").unlink()  # as if interrupted after its last chunk: the progress file decides
    with pytest.raises(ZooError, match="a 0.4 s budget, not 0.8 s"):
        compare.compare("char-rnn", budget=0.8, data=str(small_corpus), device="cpu", out=out)
    (again,) = compare.compare("char-rnn", budget=0.4, data=str(small_corpus), device="cpu", out=out)
    assert again.curve == first.curve  # the same comparison: its progress is reused


def test_compare_shows_the_lessons_figure_beside_the_lessons_corpus(nietzsche_cache, tmp_path):
    (entry,) = compare.compare("char-rnn", budget=0.4, data="nietzsche", device="cpu", out=tmp_path / "c")
    assert entry.reference == 1.547
