"""Hostile inputs to what goes up to the Hub, what a card says and what `zoo compare` reuses: links, paths, repo ids, unfinished runs, data.

Each test fails without its fix (issue 19, items 7, 13, 14, 15 and 17's `--repo`). The Hub is tests/hubserver.py on
127.0.0.1; the runs are tiny char-rnn models on about 15,000 characters of real prose.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import one_line_error, run_zoo, write_prose

import zoo
from zoo import compare, rundir
from zoo.errors import ZooError
from zoo.publish import card_text, check_repo_id, push

TINY = ("n_hidden=16", "n_fac=8")




@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    write_prose(path, 15_000)
    return path


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A run of one finished epoch on the user's own text (not the lesson's corpus)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    zoo.train("char-rnn", data=str(corpus), epochs=1, batch_size=64, overrides=TINY, out=out, quiet=True)
    return out


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run folder that a test may spoil."""
    shutil.copytree(run, dest)
    return dest


def env_for(hub, tmp_path, **extra):
    return hub.env(HF_HOME=str(tmp_path / "hf-home"), **extra)


def uploaded(hub, repo_id: str) -> dict[str, bytes]:
    return hub.repo(repo_id).files("main")


def yaml_loss(card: str) -> float:
    """The validation loss the card's model-index (YAML) gives."""
    head = card.split("\n---\n", 1)[0]
    return float(head.split("- type: loss\n      value: ", 1)[1].split("\n", 1)[0])


# --- item 7: links out of the run folder --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["README.md", "training.json"])  # a file zoo never reads, and one it loads
def test_push_refuses_a_file_that_links_out_of_the_run_folder(hub, finished, tmp_path, name):
    secret = tmp_path / "elsewhere" / "token"
    secret.parent.mkdir()
    secret.write_text("hf_pretend_this_is_a_token_0123456789\n")
    run = copy_run(finished, tmp_path / "run")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(secret)
    env = env_for(hub, tmp_path)
    proc = run_zoo("push", str(run), "--repo", "alice/linked", env=env)
    line = one_line_error(proc)
    assert line == f"zoo: error: push: {run / name} is a link to a file outside the run folder; refusing to upload it " + (
        "(copy the file in if it belongs to the run)"
    )
    assert "hf_pretend" not in proc.stdout + proc.stderr
    assert "alice/linked" not in hub.repos and not any("/api/repos/create" in p for _, p, _ in hub.requests)


def test_a_pulled_model_in_the_hub_cache_can_be_pushed_on(hub, finished, tmp_path):
    """The Hub cache's snapshot files are links into the repository's blobs: those are the model's own files."""
    env = env_for(hub, tmp_path)
    assert run_zoo("push", str(finished), "--repo", "alice/first", env=env).returncode == 0
    pulled = run_zoo("pull", "alice/first", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (Path(pulled.stdout.strip()) / "model.safetensors").is_symlink()
    again = run_zoo("push", "alice/first", "--repo", "bob/second", env=env)
    assert again.returncode == 0, again.stderr
    assert uploaded(hub, "bob/second")["model.safetensors"] == (finished / "model.safetensors").read_bytes()


# --- item 17: --repo that is not OWNER/NAME ------------------------------------------------------------------------


def test_a_repo_that_is_not_owner_slash_name_is_refused_before_any_request(hub, finished, tmp_path):
    line = one_line_error(run_zoo("push", str(finished), "--repo", "noslash", env=env_for(hub, tmp_path)))
    assert line == "zoo: error: push: --repo 'noslash' is not a Hub repository id OWNER/NAME (e.g. alice/char-rnn-small)"
    assert hub.requests == []


@pytest.mark.parametrize("repo", ["noslash", "a/b/c", "/x", "a/", "a//b", "a/b c", "a/..", "a--/b", ""])
def test_push_checks_the_repo_id_before_reading_the_run(repo, tmp_path):
    with pytest.raises(ZooError, match="is not a Hub repository id OWNER/NAME"):
        push(tmp_path / "no-such-run", repo, token="t")  # refused before the missing folder is noticed
    assert check_repo_id("alice/char-rnn_small.v2") == "alice/char-rnn_small.v2"


# --- item 13: nothing of the user's file system goes up -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "public"),
    [
        ("/home/zoouser7/Private/clientX/run2", "run2"),
        ("--out=/home/zoouser7/runs/a/", "--out=a"),
        ("../../corpus/corpus.txt", "corpus.txt"),
        ("path=/srv/data/c.txt", "path=c.txt"),  # a plugin option's KEY=VALUE
        ("~zoouser7", "~"),  # a home folder names its user
        ("n_hidden=24", "n_hidden=24"),
        ("nietzsche", "nietzsche"),
    ],
)
def test_a_command_line_argument_keeps_only_the_name_of_a_path(arg, public):
    assert rundir.name_only(arg) == public


def _leaks(files: dict[str, bytes], secrets: list[str]) -> list[str]:
    """The files whose bytes hold any of `secrets`."""
    return [f"{name}: {s}" for name, content in files.items() for s in secrets if s.encode() in content]


def test_a_pushed_run_names_no_folder_of_this_machine(hub, corpus, tmp_path):
    """--out under the user's home, a relative --data through a symlinked folder, a resume by absolute path."""
    home = tmp_path / "home" / "zoouser7"
    work = home / "Private" / "clientX"
    work.mkdir(parents=True)
    real = tmp_path / "real-corpora"
    real.mkdir()
    shutil.copyfile(corpus, real / "corpus.txt")
    (work / "corpora").symlink_to(real)
    out = work / "run2"
    env = env_for(hub, tmp_path, HOME=str(home))
    args = ("--batch-size", "64", "--set", TINY[0], "--set", TINY[1], "-q")
    first = run_zoo("train", "char-rnn", "--data", "corpora/corpus.txt", "--epochs", "1", "--out", str(out), *args, env=env, cwd=work)
    assert first.returncode == 0, first.stderr
    resumed = run_zoo("train", "--resume", str(out), "--epochs", "2", "-q", env=env, cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((out / "run.json").read_text())
    assert str(home) not in json.dumps(record["command"]) + json.dumps(record["resumes"])  # recorded without paths

    pushed = run_zoo("push", str(out), "--repo", "alice/paths", env=env, cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    files = uploaded(hub, "alice/paths")
    secrets = [str(tmp_path), os.path.realpath(tmp_path), str(home), "zoouser7", "clientX", "real-corpora"]
    assert _leaks(files, secrets) == []
    card = files["README.md"].decode()
    # every command that made these weights, the first and the resume, paths reduced to names
    assert "zoo train char-rnn --data corpus.txt --epochs 1 --out run2 " in card
    assert "\nzoo train --resume run2 --epochs 2 -q\n" in card


def test_an_older_run_that_recorded_full_paths_is_cleaned_when_pushed(hub, finished, corpus, tmp_path):
    """run.json and config.json as an older zoo wrote them: the command, the resumes and the data in full."""
    run = copy_run(finished, tmp_path / "home" / "zoouser7" / "Private" / "clientX" / "run2")
    record = json.loads((run / "run.json").read_text())
    record["command"] = f"zoo train char-rnn --data ../../corpus/corpus.txt --out {run} --set {TINY[0]}"
    record["resumes"] = [f"zoo train --resume {run} --epochs=3", None]
    record["options"]["data"] = "../../corpus/corpus.txt"
    (run / "run.json").write_text(json.dumps(record))
    config = json.loads((run / "config.json").read_text())
    config["data"] = "../../corpus/corpus.txt"  # relative: the old stripping took only absolute paths
    (run / "config.json").write_text(json.dumps(config))
    env = env_for(hub, tmp_path)
    assert run_zoo("push", str(run), "--repo", "alice/older", "--token", hub.token, env=env).returncode == 0
    files = uploaded(hub, "alice/older")
    assert _leaks(files, [str(tmp_path), "zoouser7", "clientX", "../"]) == []
    pushed_record = json.loads(files["run.json"])
    assert pushed_record["command"] == f"zoo train char-rnn --data corpus.txt --out run2 --set {TINY[0]}"
    assert pushed_record["resumes"] == ["zoo train --resume run2 --epochs=3", None]
    assert json.loads(files["config.json"])["data"] == "corpus.txt"
    assert "zoo train --resume RUN_DIR" in files["README.md"].decode()  # the resume from Python


# --- item 14: the card says what is true of these weights ------------------------------------------------------------


def test_a_run_on_the_users_own_text_shows_no_lesson_figures(finished):
    card = card_text(finished, repo_id="alice/own-text")
    row = next(ln for ln in card.splitlines() if ln.startswith("| 1 |"))
    assert row.split("|")[6].strip() == "-"  # the lesson (val) column: the lesson measured Nietzsche, not this text
    assert "Reference figures" not in card and "1.837" not in card


def test_an_edited_machine_record_stays_one_plain_line_of_the_card(finished, tmp_path):
    run = copy_run(finished, tmp_path / "edited")
    record = json.loads((run / "run.json").read_text())
    record["machine"] = {"cpu": "Evil CPU\n## Injected | `rm -rf` \x1b[31m" + "x" * 500, "cores": "2", "threads": True}
    record["options"]["autocast"] = "<script>"
    (run / "run.json").write_text(json.dumps(record))
    card = card_text(run, repo_id="alice/edited")
    line = next(ln for ln in card.splitlines() if ln.startswith("- training: "))
    assert "on Evil CPU ## Injected / 'rm -rf' \\x1b[31mxxx" in line  # one line: no heading, table cell or code span
    assert len(line) < 200 and "logical cores" not in line and "torch threads" not in line  # not numbers: left out
    assert "<script>" not in card and "autocast" not in line
    assert "\n## Injected" not in card


def test_a_run_stopped_mid_epoch_pushes_the_figures_of_the_weights_it_ships(hub, corpus, tmp_path):
    out = tmp_path / "stopped"
    m = zoo.train("char-rnn", data=str(corpus), epochs=2, batch_size=64, overrides=TINY, out=out, max_steps=250, quiet=True)
    state = rundir.read_checkpoint_state(out)
    assert state["epoch"] == 1 and state["step"] > 0  # stopped in its second epoch: weights newer than training.json
    env = env_for(hub, tmp_path)
    pushed = run_zoo("push", str(out), "--repo", "alice/stopped", env=env)
    assert pushed.returncode == 0, pushed.stderr
    warned = [ln for ln in pushed.stderr.splitlines() if ln.strip()]
    assert len(warned) == 1 and warned[0].startswith("zoo: warning: ") and "unfinished run" in warned[0]
    assert f"in epoch 2 of 2, after batch {state['step']} of {state['steps_per_epoch']}" in warned[0]

    pulled = run_zoo("pull", "alice/stopped", env=env)
    assert pulled.returncode == 0, pulled.stderr
    shipped = zoo.load(Path(pulled.stdout.strip())).evaluate(data=str(corpus))["val_loss"]
    card = uploaded(hub, "alice/stopped")["README.md"].decode()
    assert yaml_loss(card) == round(shipped, 4) != round(m.history[-1]["val_loss"], 4)
    assert "**Unfinished run**" in card and f"val loss {shipped:.4f}" in card


def test_a_run_stopped_at_the_end_of_an_epoch_says_so_and_keeps_that_epochs_figures(corpus, tmp_path):
    out = tmp_path / "boundary"
    kw = dict(data=str(corpus), batch_size=64, overrides=TINY, out=out, quiet=True)
    zoo.train("char-rnn", epochs=1, **kw)
    steps = rundir.read_checkpoint_state(out)["steps_per_epoch"]
    zoo.train(resume=out, epochs=3, max_steps=2 * steps, quiet=True)  # stops as epoch 2 ends: 1 of 3 left
    m = zoo.load(out)
    card = card_text(out, repo_id="alice/boundary")
    assert "training stopped after epoch 2 of 3. These weights are those of epoch 2." in card
    assert yaml_loss(card) == round(m.history[-1]["val_loss"], 4)


# --- item 15: zoo compare keys on the data's sha256, counts training time, shows progress -----------------------------


def test_compare_reuses_by_the_datas_sha256_not_its_path(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(corpus, tmp_path / "corpus.txt")
    (tmp_path / "corpora").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "cmp"
    kw = dict(budget=0.4, device="cpu", out=out)
    monkeypatch.setenv("ZOO_PROGRESS", "1")
    (first,) = compare.compare("char-rnn", data="corpus.txt", **kw)
    said = capsys.readouterr().err
    assert "compare: char-rnn (1 of 1): training for 0.4 s" in said  # which model, of how many
    assert "char-rnn (1 of 1) |" in said and "4/4" in said  # and a progress bar over its chunks

    # the time axis is the trainer's own training seconds: setup, validation and checkpoints left out
    assert first.curve[-1][0] == rundir.read_checkpoint_state(out / "char-rnn")["trained_seconds"]
    assert all(a[0] < b[0] for a, b in zip(first.curve, first.curve[1:]))

    weights = out / "char-rnn" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    for same_file in (str(tmp_path / "corpus.txt"), "corpora/corpus.txt"):  # another path to the same text: reused
        (again,) = compare.compare("char-rnn", data=same_file, **kw)
        assert again.val_loss == first.val_loss and weights.stat().st_mtime_ns == stamp
    assert "the finished run in" in capsys.readouterr().err

    (tmp_path / "corpus.txt").write_text(corpus.read_text(encoding="utf-8")[::-1], encoding="utf-8")  # same path, new text
    with pytest.raises(ZooError, match="holds a comparison run made with data of sha256 .*, not "):
        compare.compare("char-rnn", data="corpus.txt", **kw)
    assert weights.stat().st_mtime_ns == stamp
