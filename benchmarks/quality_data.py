"""The public credit tables of ../shared/data as vertical federations, for benchmarks/quality.py.

Each loader returns a ``Dataset``: one id and one label per customer, and the columns each
party holds, as the text cells of the source file (nothing is parsed or rescaled here, so a
party file holds exactly what the public file holds). ``holdout`` sets customers aside before
any federation sees them; ``write_case_files`` writes the federation files and the parties' files.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HOLDOUT_FRACTION = 0.25
HOLDOUT_SEED = 7
ID_COLUMN = "ID"
# The run's own evaluation rows, and validation rows for its kept-model rule.
EVAL_FRACTION = 0.1
VALIDATION_FRACTION = 0.1


@dataclass(frozen=True)
class Party:
    """One party: its name and role in the federation file, and its columns (text cells)."""

    name: str
    role: str
    cells: dict[str, list[str]]
    text: tuple[str, ...] = ()  # columns holding text, e.g. 'A11' (categorical codes)


@dataclass(frozen=True)
class Dataset:
    """Customers (ids and labels, 1 = default) and the parties' columns; the lender first."""

    key: str
    title: str
    ids: list[str]
    y: np.ndarray
    label: str  # the label column's name in the lender's file
    parties: tuple[Party, ...]
    target: float  # the largest AUC shortfall against pooling that still passes

    @property
    def lender(self) -> Party:
        return self.parties[0]


def data_dir() -> Path:
    """$FEDCREDIT_DATA, or the ``shared/data`` folder next to the repository."""
    env = os.environ.get("FEDCREDIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_table(path: Path, delimiter: str | None = ",") -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delimited file; ``delimiter=None`` splits rows on whitespace."""
    with open(path, newline="", encoding="utf-8") as handle:
        header = [h.strip().strip('"') for h in next(csv.reader(handle))]
        if delimiter is None:
            rows = [line.split() for line in handle if line.strip()]
        else:
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if row]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {number} has {len(row)} cells, header {len(header)}")
    return header, rows


def _columns(
    header: list[str], rows: list[list[str]], order: Sequence[int]
) -> dict[str, list[str]]:
    return {h: [rows[i][j].strip() for i in order] for j, h in enumerate(header)}


def _labels(cells: list[str]) -> np.ndarray:
    return np.array([int(float(v)) for v in cells], dtype=np.int64)


def _is_text(cells: list[str]) -> bool:
    try:
        for value in cells:
            float(value)
    except ValueError:
        return True
    return False


def _party(name: str, role: str, table: dict[str, list[str]], names: Sequence[str]) -> Party:
    cells = {n: table[n] for n in names}
    return Party(name, role, cells, tuple(n for n in names if _is_text(cells[n])))


# -- the five tables --------------------------------------------------------------------------
UCI_LABEL = "default.payment.next.month"
UCI_SPLIT = {
    "lender": ["LIMIT_BAL", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"],
    "ecommerce": ["SEX", "EDUCATION", "MARRIAGE", "AGE"],
    "payments": [f"BILL_AMT{i}" for i in range(1, 7)] + [f"PAY_AMT{i}" for i in range(1, 7)],
}
UCI_ROLES = {"lender": "lending", "ecommerce": "ecommerce", "payments": "payments"}


def load_uci(root: Path) -> Dataset:
    """UCI default of credit card clients; lending, e-commerce and payments (data README)."""
    header, rows = read_table(root / "uci_default_credit" / "UCI_Credit_Card.csv")
    table = _columns(header, rows, range(len(rows)))
    parties = tuple(_party(n, UCI_ROLES[n], table, cols) for n, cols in UCI_SPLIT.items())
    return Dataset(
        "uci",
        "UCI credit card clients, three institutions",
        table["ID"],
        _labels(table[UCI_LABEL]),
        UCI_LABEL,
        parties,
        0.005,
    )


def _guest_host(root: Path, stem: str, key: str, title: str) -> Dataset:
    """A FATE hetero pair: guest (id, y, x...) holds the label, host (id, x...) joined on id."""
    folder = root / "fate_examples"
    g_header, g_rows = read_table(folder / f"{stem}_hetero_guest.csv")
    h_header, h_rows = read_table(folder / f"{stem}_hetero_host.csv")
    guest = _columns(g_header, g_rows, range(len(g_rows)))
    at = {row[0].strip(): i for i, row in enumerate(h_rows)}
    missing = [i for i in guest["id"] if i not in at]
    if missing:
        raise ValueError(f"{stem}: {len(missing)} guest ids missing at the host, e.g. {missing[0]}")
    host = _columns(h_header, h_rows, [at[i] for i in guest["id"]])
    parties = (
        _party("guest", "lending", guest, [c for c in g_header if c not in ("id", "y")]),
        _party("host", "other", host, [c for c in h_header if c != "id"]),
    )
    return Dataset(key, title, guest["id"], _labels(guest["y"]), "y", parties, 0.005)


def load_fate(root: Path) -> Dataset:
    return _guest_host(root, "default_credit", "fate", "UCI credit card, FATE guest/host")


def load_breast(root: Path) -> Dataset:
    return _guest_host(root, "breast", "breast", "Wisconsin breast, FATE guest/host")


def load_gmsc(root: Path) -> Dataset:
    """Give Me Some Credit (FATE's z-scored sample): lender x0-x3, partners x4-x6 and x7-x9."""
    header, rows = read_table(root / "fate_examples" / "give_credit_homo_test.csv")
    table = _columns(header, rows, range(len(rows)))
    parties = (
        _party("lender", "lending", table, ["x0", "x1", "x2", "x3"]),
        _party("partner-a", "other", table, ["x4", "x5", "x6"]),
        _party("partner-b", "other", table, ["x7", "x8", "x9"]),
    )
    return Dataset(
        "gmsc",
        "Give Me Some Credit, three parties",
        table["id"],
        _labels(table["y"]),
        "y",
        parties,
        0.005,
    )


# Short names for the 20 attributes of german.doc, in file order, then the class.
GERMAN_COLUMNS = [
    "status",
    "duration",
    "history",
    "purpose",
    "amount",
    "savings",
    "employment",
    "installment_rate",
    "personal_status",
    "other_debtors",
    "residence",
    "property",
    "age",
    "other_plans",
    "housing",
    "credits",
    "job",
    "dependents",
    "telephone",
    "foreign_worker",
    "class",
]
GERMAN_SPLIT = {
    # The lender's own application and account data.
    "lender": ["status", "duration", "history", "purpose", "amount", "savings"],
    # An employment and household bureau.
    "partner-a": [
        "employment",
        "installment_rate",
        "personal_status",
        "other_debtors",
        "residence",
        "property",
    ],
    # A second institution: age, other credit, housing, job, contact.
    "partner-b": [
        "age",
        "other_plans",
        "housing",
        "credits",
        "job",
        "dependents",
        "telephone",
        "foreign_worker",
    ],
}


def load_german(root: Path) -> Dataset:
    """Statlog German credit: a comma-separated header, space-separated rows; class 2 = bad."""
    header, rows = read_table(root / "statlog_german" / "german.data", delimiter=None)
    if len(header) != len(GERMAN_COLUMNS):
        raise ValueError(f"german.data: expected {len(GERMAN_COLUMNS)} columns, got {len(header)}")
    table = _columns(GERMAN_COLUMNS, rows, range(len(rows)))
    y = np.array([1 if v == "2" else 0 for v in table["class"]], dtype=np.int64)
    ids = [f"G{i:04d}" for i in range(1, len(rows) + 1)]
    roles = {"lender": "lending", "partner-a": "other", "partner-b": "other"}
    parties = tuple(_party(n, roles[n], table, cols) for n, cols in GERMAN_SPLIT.items())
    return Dataset("german", "Statlog German credit, three parties", ids, y, "bad", parties, 0.02)


LOADERS: dict[str, tuple[Callable[[Path], Dataset], tuple[str, ...]]] = {
    "uci": (load_uci, ("uci_default_credit/UCI_Credit_Card.csv",)),
    "fate": (
        load_fate,
        (
            "fate_examples/default_credit_hetero_guest.csv",
            "fate_examples/default_credit_hetero_host.csv",
        ),
    ),
    "gmsc": (load_gmsc, ("fate_examples/give_credit_homo_test.csv",)),
    "breast": (
        load_breast,
        ("fate_examples/breast_hetero_guest.csv", "fate_examples/breast_hetero_host.csv"),
    ),
    "german": (load_german, ("statlog_german/german.data",)),
}


# -- what the parties write ----------------------------------------------------------------------
def holdout(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(federation rows, held-out rows): 25 % held out, stratified by label, fixed seed."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    kept, held = train_test_split(
        rows, test_size=HOLDOUT_FRACTION, stratify=y, random_state=HOLDOUT_SEED
    )
    return np.sort(kept), np.sort(held)


def one_hot_text(data: Dataset) -> Dataset:
    """Each party replaces its text columns by 0/1 columns, one per category, on its own."""
    parties = []
    for party in data.parties:
        cells: dict[str, list[str]] = {}
        for name, column in party.cells.items():
            if name not in party.text:
                cells[name] = column
                continue
            for category in sorted(set(column)):
                cells[f"{name}_{category}"] = ["1" if v == category else "0" for v in column]
        parties.append(replace(party, cells=cells, text=()))
    return replace(data, parties=tuple(parties))


def write_party(path: Path, data: Dataset, party: Party, rows: np.ndarray) -> None:
    """The party's CSV for customers ``rows``: its id, its columns, the label for the lender."""
    label = party is data.lender
    names = list(party.cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([ID_COLUMN, *names, *([data.label] if label else [])])
        for i in rows.tolist():
            cells = [party.cells[n][i] for n in names]
            writer.writerow([data.ids[i], *cells, *([int(data.y[i])] if label else [])])


def federation_toml(
    data: Dataset, files: Path, key_bits: int, binned: bool, declared: dict[str, tuple[str, ...]]
) -> str:
    """The federation file: parties on 127.0.0.1, [train] defaults but for the two fractions."""
    lines = [
        "[federation]",
        f'name = "quality-{data.key}"',
        f"key_bits = {key_bits}",
        "",
        "[coordinator]",
        'address = "127.0.0.1:50050"',
        "",
    ]
    for i, party in enumerate(data.parties):
        lines += [
            "[[party]]",
            f"name = {json.dumps(party.name)}",
            f"role = {json.dumps(party.role)}",
            f'address = "127.0.0.1:{50051 + i}"',
            f"data = {json.dumps(str(files / f'{party.name}.csv'))}",
            f'id_column = "{ID_COLUMN}"',
        ]
        if party is data.lender:
            lines.append(f"label_column = {json.dumps(data.label)}")
        if declared[party.name]:
            lines.append("# Declared until fedcredit finds text columns itself.")
            lines.append(f"categorical = {json.dumps(list(declared[party.name]))}")
        lines.append("")
    lines += [
        "[train]",
        "# Nothing else is set: the benchmark measures the defaults.",
        f"test_fraction = {EVAL_FRACTION}",
        f"validation_fraction = {VALIDATION_FRACTION}",
    ]
    if binned:
        lines += ["", "[binning]"]
    if len(data.parties) == 2 and _knows_single_partner():
        # The only partner of a two-party federation scores only when told it may: the lender
        # then learns its partial scores, which a benchmark on public data can accept.
        lines += ["", "[scoring]", "allow_single_partner = true"]
    return "\n".join(lines) + "\n"


def _knows_single_partner() -> bool:
    """Whether this fedcredit has ``[scoring] allow_single_partner`` (older ones refuse the
    table, and let a single partner score)."""
    from dataclasses import fields

    import fedcredit.config

    settings = getattr(fedcredit.config, "ScoringSettings", None)
    return settings is not None and "allow_single_partner" in {f.name for f in fields(settings)}


def write_case_files(
    data: Dataset,
    folder: Path,
    key_bits: int,
    binned: bool,
    declared: dict[str, tuple[str, ...]],
    kept: np.ndarray,
) -> tuple[Path, Path]:
    """Federation files and the parties' files: for the run (customers ``kept``) and for
    scoring (everyone); ``declared`` names each party's ``categorical`` columns."""
    everyone = np.arange(len(data.ids))
    paths = []
    for name, rows in (("federation", kept), ("scoring", everyone)):
        files = folder / name
        for party in data.parties:
            write_party(files / f"{party.name}.csv", data, party, rows)
        path = folder / f"{name}.toml"
        path.write_text(federation_toml(data, files, key_bits, binned, declared))
        paths.append(path)
    return paths[0], paths[1]
