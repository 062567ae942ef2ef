"""The tables entity-embeddings trains on: Texas housing (offline, from an installed package) and Rossmann.

Importable without torch. Both read plain CSV (never a pickle) with the csv module.

txhousing  plotnine's `plotnine/data/txhousing.csv` (MIT; from ggplot2): monthly home sales of 46
           Texas cities, 2000-2015; 8,602 rows, of which 8,034 have a sales figure. The file is
           found through the installed distribution's metadata, checked against the sha256 its
           RECORD lists, and read without importing plotnine (or pandas).
           categorical: city (46), year (16), month (12); continuous: date (the time trend: year +
           (month - 1)/12) and median (the median sale price); target: sales.
rossmann   Kaggle's Rossmann Store Sales (the paper's data): `--data DIR` with train.csv and store.csv.
           Closed days and days without sales are dropped (as the paper did).
           categorical: Store, DayOfWeek, Year, Month, Day, Promo, StateHoliday, SchoolHoliday,
           StoreType, Assortment, Promo2, PromoInterval; continuous: CompetitionDistance; target: Sales.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

TXHOUSING_DIST = "plotnine"
TXHOUSING_FILE = "plotnine/data/txhousing.csv"
INSTALL_HINT = "pip install 'lesson6-zoo[tabular]' (it installs plotnine, whose package ships the file)"


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:  # "NA", ""
        return float("nan")


def txhousing_path() -> tuple[Path, str | None]:
    """The installed txhousing.csv and the sha256 (hex) its distribution's RECORD gives, without importing plotnine."""
    from importlib import metadata

    try:
        dist = metadata.distribution(TXHOUSING_DIST)
    except metadata.PackageNotFoundError:
        raise ZooError(f"the txhousing table ships with the {TXHOUSING_DIST} package, which is not installed: {INSTALL_HINT}") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/") == TXHOUSING_FILE:
            digest = None
            if f.hash is not None and f.hash.mode == "sha256":
                digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
            return Path(str(f.locate())), digest
    raise ZooError(f"{TXHOUSING_DIST} {dist.version} has no {TXHOUSING_FILE}; {INSTALL_HINT}")


class TxHousing:
    name = "txhousing"
    summary = "Texas home sales 2000-2015, 46 cities x year x month (plotnine's txhousing.csv) - a table; lesson6-zoo[tabular]"

    def load_table(self, path: Path | None = None) -> Any:
        import numpy as np

        from zoo.data.table import Table

        if path is None:
            path, expected = txhousing_path()
        else:
            expected = None
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ZooError(f"cannot read {path} ({exc.strerror})") from None
        digest = hashlib.sha256(raw).hexdigest()
        if expected is not None and digest != expected:
            raise ZooError(f"{path} has sha256 {digest}, not the {expected} its package's RECORD lists; reinstall {TXHOUSING_DIST}")
        cols: dict[str, list] = {k: [] for k in ("city", "year", "month", "date", "median", "sales")}
        for row in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
            sales = _float(row["sales"])
            if not sales > 0:  # NA: no figure to learn from
                continue
            year, month = int(row["year"]), int(row["month"])
            cols["city"].append(row["city"])
            cols["year"].append(year)
            cols["month"].append(month)
            cols["date"].append(year + (month - 1) / 12)
            cols["median"].append(_float(row["median"]))
            cols["sales"].append(sales)
        if not cols["sales"]:
            raise ZooError(f"{path}: no rows with sales")
        order = np.asarray(cols["date"])
        return Table("txhousing", cols, ("city", "year", "month"), ("date", "median"), "sales", order=order, sha256=digest)


ROSSMANN_CATEGORICAL = (
    "Store", "DayOfWeek", "Year", "Month", "Day", "Promo", "StateHoliday", "SchoolHoliday",
    "StoreType", "Assortment", "Promo2", "PromoInterval",
)  # fmt: skip
ROSSMANN_CONTINUOUS = ("CompetitionDistance",)
ROSSMANN_URL = "https://www.kaggle.com/c/rossmann-store-sales/data"
ROSSMANN_TRAIN_COLUMNS = ("Store", "DayOfWeek", "Date", "Sales", "Promo", "StateHoliday", "SchoolHoliday")
ROSSMANN_STORE_COLUMNS = ("Store", "StoreType", "Assortment", "CompetitionDistance", "Promo2", "PromoInterval")


def _read_csv(path: Path, required: tuple[str, ...], digest: Any) -> list[dict[str, str]]:
    """A CSV file's rows, once it is known to be UTF-8 text with the `required` columns; its bytes go into `digest`."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except OSError as exc:
        raise ZooError(f"cannot read {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ZooError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    digest.update(raw)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or ())]
    if missing:
        raise ZooError(f"{path} has no {', '.join(missing)} column{'s' * (len(missing) > 1)} (it needs {', '.join(required)})")
    return list(reader)


class Rossmann:
    name = "rossmann"
    summary = "Rossmann store sales (Kaggle; the paper's data) - a table: --data DIR holding train.csv and store.csv"

    def accepts(self, path: Path) -> bool:
        path = Path(path)
        return path.is_dir() and (path / "train.csv").is_file() and (path / "store.csv").is_file()

    def load_table(self, path: Path | None = None) -> Any:
        import numpy as np

        from zoo.data.table import Table

        if path is None or not self.accepts(path):
            where = f"{path} lacks train.csv or store.csv" if path is not None else "no directory given"
            raise ZooError(f"rossmann: {where}; download train.csv and store.csv from {ROSSMANN_URL} and pass --data DIR")
        path = Path(path)
        h = hashlib.sha256()
        store_rows = _read_csv(path / "store.csv", ROSSMANN_STORE_COLUMNS, h)
        train_rows = _read_csv(path / "train.csv", ROSSMANN_TRAIN_COLUMNS, h)
        stores = {row["Store"]: row for row in store_rows}
        cols: dict[str, list] = {k: [] for k in (*ROSSMANN_CATEGORICAL, *ROSSMANN_CONTINUOUS, "Sales")}
        order = []
        for line, row in enumerate(train_rows, start=2):  # line 1 is the header
            if row.get("Open") == "0" or not _float(row["Sales"]) > 0:
                continue
            store = stores.get(row["Store"])
            if store is None:
                raise ZooError(f"{path}/train.csv names store {row['Store']}, which store.csv lacks")
            try:
                year, month, day = (int(p) for p in row["Date"].split("-"))
                store_id, day_of_week = int(row["Store"]), int(row["DayOfWeek"])
            except ValueError:
                raise ZooError(
                    f"{path}/train.csv line {line}: expected a YYYY-MM-DD Date and whole-number Store and DayOfWeek, "
                    f"got {row['Date']!r}, {row['Store']!r}, {row['DayOfWeek']!r}"
                ) from None
            values = {**row, **{k: v for k, v in store.items() if k != "Store"}, "Year": year, "Month": month, "Day": day}
            values["Store"], values["DayOfWeek"] = store_id, day_of_week
            for c in ROSSMANN_CATEGORICAL:
                cols[c].append(values[c])
            cols["CompetitionDistance"].append(np.log1p(_float(store["CompetitionDistance"])))
            cols["Sales"].append(float(row["Sales"]))
            order.append(year * 10_000 + month * 100 + day)
        if not cols["Sales"]:
            raise ZooError(f"{path}/train.csv: no open days with sales")
        return Table("rossmann", cols, ROSSMANN_CATEGORICAL, ROSSMANN_CONTINUOUS, "Sales", order=np.asarray(order), sha256=h.hexdigest())
