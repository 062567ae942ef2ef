"""`zoo compare`: same budget for every model, a leaderboard on a leak-free tail, reuse of finished runs."""

from __future__ import annotations

import json

from helpers import run_zoo

from zoo import compare


def test_compare_ranks_models_and_reuses_finished_runs(small_corpus, tmp_path):
    out = tmp_path / "cmp"
    entries = compare.compare("char-s*", budget=1.2, data=str(small_corpus), device="cpu", out=out)
    assert {e.model for e in entries} == {"char-seq", "char-seq-identity", "char-stateful"}
    losses = [e.val_loss for e in entries]
    assert losses == sorted(losses)  # the leaderboard is ranked by held-out loss
    for e in entries:
        assert e.val_loss > 0 and abs(e.val_bpc - e.val_loss / 0.6931471805599453) < 1e-9
        assert len(e.curve) == compare.CHUNKS and e.curve[-1][0] >= 1.2
        assert (out / e.model / "compare.json").exists()
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")
    stamp = (out / entries[0].model / "model.safetensors").stat().st_mtime_ns
    again = compare.compare("char-s*", budget=1.2, data=str(small_corpus), device="cpu", out=out)
    assert [e.val_loss for e in again] == [e.val_loss for e in entries]
    assert (out / entries[0].model / "model.safetensors").stat().st_mtime_ns == stamp  # not trained again


def test_compare_cli_json(small_corpus, tmp_path):
    proc = run_zoo(
        "compare", "char-r*", "--budget", "1", "--data", str(small_corpus), "--device", "cpu", "--out", str(tmp_path / "c"), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["model"] for r in rows] == ["char-rnn"]
    assert rows[0]["params"] > 0 and rows[0]["reference"] == 1.547
    bad = run_zoo("compare", "nothing*", "--budget", "1")
    assert bad.returncode != 0 and "no character models match" in bad.stderr


def test_compare_records_its_schedule_compactly_and_resumes_from_it(small_corpus, tmp_path):
    """Compare asks for 1,000 epochs (its budget ends training); run.json says so without a 1,000-entry list."""
    out = tmp_path / "c"
    (entry,) = compare.compare("char-rnn", budget=0.4, data=str(small_corpus), device="cpu", out=out)
    assert len(entry.curve) == compare.CHUNKS  # every chunk after the first resumed the run from its run.json
    options = json.loads((out / "char-rnn" / "run.json").read_text())["options"]
    assert options["epoch_lrs"] == [1e-3] and options["epochs"] == 1000
