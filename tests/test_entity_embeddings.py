"""entity-embeddings: the table it reads, training and MAPE, save/load, `zoo plot`, Rossmann's files, push and pull."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_zoo

import zoo
from zoo.errors import ZooError

pytest.importorskip("matplotlib")
TINY = ("layers=32,16",)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A small entity-embeddings network trained on the bundled table, where `zoo plot NAME` finds it (runs/NAME)."""
    from zoo_tabular.data import txhousing_path

    try:
        txhousing_path()
    except ZooError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("ee") / "runs" / "entity-embeddings"
    zoo.train("entity-embeddings", overrides=TINY, epochs=6, seed=0, out=out, device="cpu", quiet=True)
    return out


def test_embedding_sizes_follow_the_rule():
    from zoo_tabular.model import emb_size

    assert [emb_size(n) for n in (2, 3, 13, 17, 47, 99, 100, 1116)] == [1, 2, 7, 9, 24, 50, 50, 50]
    assert emb_size(1116, max_emb=10) == 10


def test_the_table_is_read_from_the_package_without_importing_it():
    code = (
        "import sys; from zoo_tabular.data import TxHousing; t = TxHousing().load_table();"
        "print(len(t), t.categorical, t.continuous, t.target, 'plotnine' in sys.modules, 'pandas' in sys.modules, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if "not installed" in proc.stderr:
        pytest.skip("plotnine is not installed")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("(")[0].strip() == "8034"
    assert proc.stdout.rstrip().endswith("False False False")  # neither plotnine nor pandas nor torch imported


def test_training_reports_a_mape_far_below_predicting_the_median(run):
    m = zoo.load(run)
    last = m.history[-1]
    result = m.evaluate()
    assert result["val_mape"] == pytest.approx(last["val_mape"], rel=1e-5)
    assert result["median_mape"] > 1.0  # sales vary by two orders of magnitude between cities
    assert last["val_mape"] < 0.4 * result["median_mape"], (last, result)
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "tabular-regression"
    assert list(config["columns"]["categorical"]) == ["city", "year", "month"]
    assert len(config["columns"]["categorical"]["city"]) == 46
    assert config["columns"]["categorical"]["month"] == list(range(1, 13))


def test_save_load_gives_identical_predictions(run):
    m = zoo.load(run)
    table = m.table()
    first = m.predict(table)
    again = zoo.load(run).predict(table)
    assert first.shape == (len(table),) and np.all(first > 0)
    assert np.array_equal(first, again)
    with torch.no_grad():  # one embedding per categorical column, sized by the rule
        assert {c: tuple(m.model.embedding(c).shape) for c in m.columns["categorical"]} == {
            "city": (47, 24),
            "year": (17, 9),
            "month": (13, 7),
        }


def test_zoo_plot_writes_a_png_of_the_month_embedding(run):
    from PIL import Image

    proc = run_zoo("plot", "entity-embeddings", "--column", "month", cwd=run.parent.parent)
    assert proc.returncode == 0, proc.stderr
    png = run.parent.parent / proc.stdout.strip()
    assert png == run / "embedding-month.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 400


def test_plot_rejects_a_column_that_is_not_categorical(run):
    from zoo_tabular.plot import plot_command

    with pytest.raises(ZooError, match="its categorical columns: city, year, month"):
        plot_command(str(run), "sales", None)


def test_principal_components_of_a_known_matrix():
    from zoo_tabular.plot import labels, principal_components

    w = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, -0.5, 0.0]])
    pcs, share = principal_components(w)
    assert np.allclose(np.abs(pcs[:, 0]), [1, 1, 0, 0]) and np.allclose(np.abs(pcs[:, 1]), [0, 0, 0.5, 0.5])
    assert share[0] == pytest.approx(0.8)
    assert labels("month", [1, 12]) == ["Jan", "Dec"] and labels("city", ["Waco"]) == ["Waco"]


def test_a_text_model_refuses_a_table_and_back():
    with pytest.raises(ZooError, match="is a table, not a text"):
        zoo.train("char-rnn", data="txhousing")
    with pytest.raises(ZooError, match="a text corpus, not a table"):
        zoo.train("entity-embeddings", data="pydoc-topics")


def _rossmann(root: Path) -> Path:
    """Rossmann's two files in miniature: 3 stores, 40 days each, some closed."""
    root.mkdir()
    rng = np.random.default_rng(0)
    store = ["Store,StoreType,Assortment,CompetitionDistance,CompetitionOpenSinceMonth,CompetitionOpenSinceYear,"
             "Promo2,Promo2SinceWeek,Promo2SinceYear,PromoInterval"]  # fmt: skip
    store += ["1,c,a,1270,9,2008,0,,,", '2,a,a,570,11,2007,1,13,2010,"Jan,Apr,Jul,Oct"', '3,a,c,,,,1,14,2011,"Feb,May,Aug,Nov"']
    train = ["Store,DayOfWeek,Date,Sales,Customers,Open,Promo,StateHoliday,SchoolHoliday"]
    for s in (1, 2, 3):
        for d in range(40):
            day = 1 + d % 28
            month = 6 + d // 28
            dow = 1 + d % 7
            is_open = dow != 7
            sales = int(rng.integers(3000, 9000) * s) if is_open else 0
            train.append(f"{s},{dow},2015-{month:02d}-{day:02d},{sales},{sales // 10},{int(is_open)},{d % 2},0,0")
    (root / "store.csv").write_text("\n".join(store) + "\n")
    (root / "train.csv").write_text("\n".join(train) + "\n")
    return root


def test_rossmann_files_train_with_data_dir(tmp_path):
    from zoo import registry
    from zoo.data.table import load_table

    data = _rossmann(tmp_path / "rossmann")
    table = load_table(str(data), "txhousing", registry.datasets())
    assert table.name == "rossmann" and len(table) == 3 * 40 - 3 * 5  # closed Sundays dropped
    assert "Store" in table.categorical and table.continuous == ("CompetitionDistance",)
    m = zoo.train("entity-embeddings", data=str(data), overrides=TINY, epochs=1, out=tmp_path / "run", device="cpu", quiet=True)
    assert np.isfinite(m.history[-1]["val_mape"])
    assert m.config["data"] == str(data.resolve())
    with pytest.raises(ZooError, match="lacks train.csv or store.csv|no installed table source"):
        load_table(str(tmp_path), "txhousing", registry.datasets())


def _spoil(name: str, old: bytes, new: bytes):
    def spoil(root: Path) -> None:
        (root / name).write_bytes((root / name).read_bytes().replace(old, new))

    return spoil


@pytest.mark.parametrize(
    "spoil, needle",
    [
        (_spoil("train.csv", b",Sales,", b",Revenue,"), "train.csv has no Sales column (it needs Store, DayOfWeek, Date, Sales"),
        (_spoil("store.csv", b",Assortment,", b",Range,"), "store.csv has no Assortment column"),
        (_spoil("train.csv", b"2015-06-0", b"2015/06/0"), "train.csv line 2: expected a YYYY-MM-DD Date"),
        (_spoil("train.csv", b"Store,", b"St\xf6re,"), "train.csv: not UTF-8 text (byte 2"),
    ],
    ids=["no-sales", "no-assortment", "slash-dates", "latin-1"],
)
def test_malformed_rossmann_files_are_one_line(tmp_path, spoil, needle):
    from zoo import registry
    from zoo.data.table import load_table

    data = _rossmann(tmp_path / "rossmann")
    spoil(data)
    with pytest.raises(ZooError) as info:
        load_table(str(data), "txhousing", registry.datasets())
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_resume_continues_to_the_same_weights(run, tmp_path):
    common = dict(overrides=TINY, epochs=2, seed=3, device="cpu", quiet=True)
    whole = zoo.train("entity-embeddings", out=tmp_path / "whole", **common)
    zoo.train("entity-embeddings", out=tmp_path / "cut", max_steps=70, **common)
    resumed = zoo.train(resume=tmp_path / "cut", quiet=True)
    for (k, v), (k2, v2) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_push_and_pull_like_every_other_model(run, tmp_path):
    from hubserver import start_hub

    hub = start_hub(tmp_path)
    try:
        env = hub.env(HF_HOME=str(tmp_path / "hf-home"))
        pushed = run_zoo("push", str(run), "--repo", "alice/entity-embeddings", env=env)
        assert pushed.returncode == 0, pushed.stderr
        stored = hub.repo("alice/entity-embeddings").files("main")
        assert {"model.safetensors", "config.json", "README.md", "training.json", "run.json"} <= set(stored)
        card = stored["README.md"].decode()
        assert "library_name: zoo" in card and "tabular-regression" in card and "month (12)" in card
        pulled = run_zoo("pull", "alice/entity-embeddings", env=env)
        assert pulled.returncode == 0, pulled.stderr
        folder = Path(pulled.stdout.strip())
        assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
        m, again = zoo.load(run), zoo.load(folder)
        table = m.table()
        assert np.array_equal(m.predict(table), again.predict(table))
    finally:
        hub.stop()


@pytest.mark.parametrize(("data", "message"), [("/no/such/folder", "no such file or folder"), ("txhousin", "did you mean txhousing")])
def test_a_missing_table_path_or_a_misspelt_name_is_said_so(data, message):
    with pytest.raises(ZooError, match=message):
        zoo.train("entity-embeddings", data=data, epochs=1, quiet=True)


def test_the_header_says_when_a_table_model_trains_under_bf16_autocast(tmp_path, monkeypatch, capsys):
    import zoo.runtime

    monkeypatch.setattr(zoo.runtime, "cpu_has_bf16", lambda: True)
    zoo.train("entity-embeddings", overrides=TINY, amp=True, max_steps=2, out=tmp_path / "r", device="cpu")
    assert "device cpu, bf16 autocast, output" in capsys.readouterr().err
