"""Text columns are categories without being declared: the loader finds them, plain logistic
regression one-hot encodes them at their own party from its training rows only, binning bins
them as categories, and `fedcredit run` trains on the Statlog German file split across three
parties with no `categorical` key."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcredit.config import load_federation
from fedcredit.data.loader import load_party_csv
from fedcredit.errors import ConfigError, DataError
from fedcredit.node.runtime import make_party_node
from fedcredit.protocol.binning import (
    BinEncoder,
    PartnerBinning,
    category_code,
    fit_columns,
    run_binning_local,
    with_category_codes,
)
from fedcredit.protocol.binning.settings import BinningSettings
from fedcredit.protocol.logistic.encoding import (
    MIN_LEVEL_SHARE,
    OneHotEncoder,
    fit_levels,
)
from fedcredit.protocol.logistic.lender import LabelParty
from fedcredit.protocol.logistic.partner import FeatureParty
from fedcredit.protocol.logistic.settings import TrainSettings

GERMAN = Path(__file__).resolve().parents[3] / "shared" / "data" / "statlog_german" / "german.data"
PURPOSES = ["car"] * 50 + ["tv"] * 30 + ["edu"] * 14 + ["boat"] * 3 + ["ship"] * 2 + [""]
SETTINGS = TrainSettings(batch_size=100, test_fraction=0.25, seed=3)


def write_host(path: Path, rows: int = 400, *, seed: int = 1) -> Path:
    """A partner file: a numeric column and an undeclared text column 'purpose'."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "purpose", "income"])
        for i in range(rows):
            writer.writerow([f"C{i:04d}", rng.choice(PURPOSES), f"{rng.gauss(50, 10):.3f}"])
    return path


def write_lender(path: Path, host: Path) -> Path:
    """The lender's file for the same ids; defaults depend on the host's purpose."""
    rng = random.Random(2)
    risk = {"car": 0.1, "tv": 0.3, "edu": 0.5, "boat": 0.7, "ship": 0.7, "": 0.4}
    with open(host, encoding="utf-8") as source, open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "age", "default"])
        for row in list(csv.reader(source))[1:]:
            writer.writerow([row[0], rng.randint(20, 70), int(rng.random() < risk[row[1]])])
    return path


def host_party(path: Path, *, one_hot: bool = True) -> FeatureParty:
    """A partner built from its file as ``make_party_node`` builds it."""
    data = load_party_csv(path, id_column="id")
    x, names = with_category_codes(data.X, data.feature_names, data.categorical)
    party = FeatureParty("host", data.ids, x, names, SETTINGS)
    party.categorical = tuple(data.categorical)
    party.one_hot_categories = one_hot
    return party


def lender_party(path: Path) -> LabelParty:
    data = load_party_csv(path, id_column="id", label_column="default")
    assert data.y is not None
    return LabelParty("lender", data.ids, data.X, data.feature_names, data.y, SETTINGS)


def onehot(party: FeatureParty) -> OneHotEncoder:
    assert isinstance(party.encoder, OneHotEncoder)
    return party.encoder


# -- the loader ------------------------------------------------------------------------------
def test_a_text_column_loads_as_categories_without_being_declared(tmp_path: Path) -> None:
    path = tmp_path / "german.csv"
    path.write_text("id,a1,a2,y\nG1,A12,6,1\nG2,A11,48,0\nG3,,12,0\n", encoding="utf-8")

    data = load_party_csv(path, id_column="id", label_column="y")

    assert data.feature_names == ["a2"]
    assert data.categorical == {"a1": ["A12", "A11", ""]}
    np.testing.assert_array_equal(data.X[:, 0], [6.0, 48.0, 12.0])


def test_a_parquet_text_column_is_found_like_a_csv_one(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "party.parquet"
    table = {"id": ["G1", "G2", "G3"], "a1": ["A12", None, "A11"], "a2": [6, 48, 12]}
    pq.write_table(pa.table(table), path)

    data = load_party_csv(path, id_column="id")

    assert data.feature_names == ["a2"]
    assert data.categorical == {"a1": ["A12", "", "A11"]}


def test_the_categorical_key_still_makes_a_numeric_coded_column_categories(
    tmp_path: Path,
) -> None:
    path = tmp_path / "party.csv"
    path.write_text("id,grade,x\nA,1,0.5\nB,3,0.7\nC,2,0.1\n", encoding="utf-8")

    data = load_party_csv(path, id_column="id", categorical=["grade"])

    assert data.feature_names == ["x"]
    assert data.categorical == {"grade": ["1", "3", "2"]}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_mostly_numeric_column_with_a_stray_word_is_refused_in_one_line_with_the_fix(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"party{suffix}"
    cells = ["1200", "800", "n/a", "1500"]
    if suffix == ".csv":
        path.write_text("id,income\n" + "".join(f"C{i},{v}\n" for i, v in enumerate(cells)))
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.table({"id": [f"C{i}" for i in range(4)], "income": cells}), path)

    with pytest.raises(DataError) as caught:
        load_party_csv(path, id_column="id")

    message = str(caught.value)
    place = "line 4" if suffix == ".csv" else "row 3"
    assert message.startswith(f"{path}: {place}, column 'income': not a number: 'n/a'")
    assert "3 of the column's 4 filled cells are numbers" in message
    assert "correct this cell" in message and "'categorical' key" in message
    assert "\n" not in message


def test_a_bad_label_is_still_refused_naming_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "lender.csv"
    path.write_text("id,purpose,y\nA,car,0\nB,tv,bad\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"lender.csv: line 3, column 'y': not a number: 'bad'"):
        load_party_csv(path, id_column="id", label_column="y")


# -- the level rule ---------------------------------------------------------------------------
def test_rare_categories_share_one_level_and_the_most_frequent_is_the_reference() -> None:
    values = ["car"] * 60 + ["tv"] * 25 + [""] * 10 + ["boat"] * 3 + ["ship"] * 2
    codes = np.array([category_code(v) for v in values])

    column = fit_levels("purpose", 0, codes, MIN_LEVEL_SHARE)
    encoder = OneHotEncoder([column], MIN_LEVEL_SHARE)
    probe = np.array([[category_code(v)] for v in ["car", "tv", "", "boat", "zzz"]])

    assert column.levels == ("car", "tv", "") and column.has_other and column.reference == 0
    assert encoder.feature_names == ["purpose=tv", "purpose=(missing)", "purpose=(other)"]
    # Indicators centred by each level's training share (tv 25 %, missing 10 %, other 5 %).
    assert column.centre == pytest.approx((0.25, 0.10, 0.05))
    np.testing.assert_allclose(
        encoder.transform(probe) + np.array(column.centre)[None, :],
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]],
        atol=1e-12,
    )


def test_a_rare_missing_value_joins_other_and_without_other_new_categories_score_as_reference() -> (
    None
):
    rare_missing = [category_code(v) for v in ["a"] * 70 + ["b"] * 28 + [""] * 2]
    no_rare = [category_code(v) for v in ["a"] * 70 + ["b"] * 30]

    with_other = fit_levels("c", 0, np.array(rare_missing), MIN_LEVEL_SHARE)
    without = fit_levels("c", 0, np.array(no_rare), MIN_LEVEL_SHARE)

    assert with_other.levels == ("a", "b") and with_other.has_other
    assert with_other.levels_of(np.array([category_code("")])).tolist() == [2]
    assert without.levels == ("a", "b") and not without.has_other
    assert without.levels_of(np.array([category_code("new")])).tolist() == [without.reference]


# -- plain logistic regression ------------------------------------------------------------------
def test_alignment_one_hot_encodes_the_text_column_and_standardizes_the_numbers(
    tmp_path: Path,
) -> None:
    party = host_party(write_host(tmp_path / "host.csv"))

    party.align(list(party.ids))

    encoder = onehot(party)
    assert party.feature_names == encoder.feature_names
    assert encoder.feature_names[0] == "income"
    assert {"purpose=tv", "purpose=edu"} <= set(encoder.feature_names)
    # (other) holds 14 of the 300 training rows, below the 5 % a design column needs
    # (fedcredit.protocol.design_floor): it scores like the reference.
    assert "purpose=(other)" not in encoder.feature_names
    assert "purpose=car" not in encoder.feature_names  # the reference has no column
    assert party.n_weights == len(encoder.feature_names) == party.weights.shape[0]
    assert party.split is not None
    z = encoder.transform(party.raw[party.aligned_rows[party.split.train]])[:, 0]
    assert abs(z.mean()) < 1e-9 and abs(z.std() - 1.0) < 1e-9


def test_the_encoder_is_fitted_on_training_rows_only(tmp_path: Path) -> None:
    path = write_host(tmp_path / "host.csv")
    party = host_party(path)
    party.align(list(party.ids))
    assert party.split is not None
    test_ids = {party.ids[i] for i in party.aligned_rows[party.split.test]}
    train_id = party.ids[int(party.aligned_rows[party.split.train[0]])]

    def changed(target: set[str]) -> dict[str, object]:
        rows = list(csv.reader(path.open(encoding="utf-8")))
        for row in rows[1:]:
            if row[0] in target:
                row[1], row[2] = "yacht", "9999"
        other = tmp_path / "changed.csv"
        with open(other, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        again = host_party(other)
        again.align(list(party.ids))
        return onehot(again).to_dict()

    assert changed(test_ids) == onehot(party).to_dict()
    assert changed({train_id}) != onehot(party).to_dict()


def test_a_model_part_round_trip_scores_identically(tmp_path: Path) -> None:
    path = write_host(tmp_path / "host.csv")
    party = host_party(path)
    party.align(list(party.ids))
    party.weights = np.random.default_rng(4).normal(size=party.n_weights)
    part = json.loads(json.dumps(party.model_part()))
    fresh = host_party(path)

    fresh.load_model_part(part)

    applicants = party.ids[:50]
    x_trained, _ = party.rows_for_ids(applicants)
    x_loaded, _ = fresh.rows_for_ids(applicants)
    assert part["encoder"]["kind"] == "onehot"
    assert fresh.feature_names == party.feature_names
    np.testing.assert_array_equal(x_loaded, x_trained)
    np.testing.assert_array_equal(fresh.linear(x_loaded), party.linear(x_trained))


def test_a_model_part_is_refused_when_the_data_columns_changed(tmp_path: Path) -> None:
    party = host_party(write_host(tmp_path / "host.csv"))
    party.align(list(party.ids))
    part = party.model_part()
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("id,income,purpose\nC0000,1,2\nC0001,2,3\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="the model takes \\['purpose'\\] as categories"):
        host_party(numeric).load_model_part(part)


def test_a_malformed_or_unknown_encoder_in_a_model_part_is_a_config_error(tmp_path: Path) -> None:
    party = host_party(write_host(tmp_path / "host.csv"))
    party.align(list(party.ids))
    part = party.model_part()

    with pytest.raises(ConfigError, match="unknown encoder kind 'trees'"):
        host_party(write_host(tmp_path / "h.csv")).load_model_part(
            {**part, "encoder": {"kind": "trees"}}
        )
    broken = {**part["encoder"], "columns": [{"name": "purpose", "type": "categorical"}]}
    with pytest.raises(ConfigError, match="malformed one-hot encoder"):
        host_party(write_host(tmp_path / "h.csv")).load_model_part({**part, "encoder": broken})


def test_a_party_without_text_columns_keeps_the_plain_standardized_design(
    tmp_path: Path,
) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("id,a,b\n" + "".join(f"C{i},{i},{i % 7}\n" for i in range(40)))
    party = host_party(path)

    party.align(list(party.ids))

    assert party.encoder is None and party.feature_names == ["a", "b"]


def test_make_party_node_one_hot_encodes_only_without_a_binning_table(tmp_path: Path) -> None:
    host = write_host(tmp_path / "host.csv")
    lender = write_lender(tmp_path / "lender.csv", host)
    plain = load_federation(
        write_federation(tmp_path, {"lender": lender, "host": host}), allow_small_keys=True
    )
    binned = load_federation(
        write_federation(tmp_path / "b", {"lender": lender, "host": host}, binning=True),
        allow_small_keys=True,
    )

    plain_party = make_party_node(plain, "host", None, {})._party_factory()
    binned_party = make_party_node(binned, "host", None, {})._party_factory()

    assert plain_party.categorical == binned_party.categorical == ("purpose",)
    assert plain_party.one_hot_categories and not binned_party.one_hot_categories
    binned_party.align(list(binned_party.ids))
    assert binned_party.encoder is None


# -- binning ------------------------------------------------------------------------------------
def test_binning_bins_an_undeclared_text_column_as_categories(tmp_path: Path) -> None:
    host_path = write_host(tmp_path / "host.csv", rows=600)
    host = host_party(host_path, one_hot=False)
    lender = lender_party(write_lender(tmp_path / "lender.csv", host_path))
    for party in (lender, host):
        party.align(list(host.ids))
    settings = BinningSettings(bins=5, iv_threshold=0.0)
    fine = fit_columns(host, settings, PartnerBinning(host, settings).categorical)

    result = run_binning_local(lender, [host], settings, key_bits=1024, allow_small=True)

    purpose = next(c for c in fine if c.name == "purpose")
    assert purpose.categorical and purpose.binning.kind == "categorical"
    assert isinstance(host.encoder, BinEncoder)
    assert any(name.startswith("purpose=") and "tv" in name for name in host.encoder.feature_names)
    assert {r["column"] for r in result.report} == {"age", "purpose", "income"}


# -- real nodes ---------------------------------------------------------------------------------
def write_federation(
    folder: Path,
    data: dict[str, Path],
    *,
    batch: int = 250,
    epochs: int = 4,
    binning: bool = False,
) -> Path:
    """A federation file (no `categorical` key) for party files, the first being the lender."""
    folder.mkdir(parents=True, exist_ok=True)
    text = [
        '[federation]\nname = "text"\nkey_bits = 1024\nmin_overlap = 100\n',
        '[coordinator]\naddress = "127.0.0.1:50050"\n',
    ]
    for i, (name, path) in enumerate(data.items()):
        role = "lending" if i == 0 else "other"
        text.append(f'[[party]]\nname = "{name}"\nrole = "{role}"\ndata = "{path}"')
        text.append(f'address = "127.0.0.1:{50051 + i}"\nid_column = "id"')
        if i == 0:
            text.append('label_column = "default"')
        text.append("")
    text.append(f"[train]\nepochs = {epochs}\nbatch_size = {batch}\ntest_fraction = 0.25\n")
    if binning:
        text.append("[binning]\nbins = 5\n")
    path = folder / "federation.toml"
    path.write_text("\n".join(text), encoding="utf-8")
    return path


def fedcredit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedcredit", *args], capture_output=True, text=True, timeout=timeout
    )


GERMAN_SPLIT = {
    "lender": ["A1", "A2", "A3", "A5"],
    "ecommerce": ["A4", "A6", "A7", "A9", "A12", "A13", "A15", "A17", "A19", "A20"],
    "payments": ["A8", "A10", "A11", "A14", "A16", "A18"],
}


def write_german(folder: Path) -> dict[str, Path]:
    """german.data (comma header, space-separated rows) as three party files keyed by row id."""
    lines = GERMAN.read_text(encoding="utf-8").splitlines()
    rows = [line.split() for line in lines[1:] if line.strip()]
    out = {}
    for party, columns in GERMAN_SPLIT.items():
        index = [int(c[1:]) - 1 for c in columns]
        path = folder / f"{party}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *columns, *(["default"] if party == "lender" else [])])
            for i, row in enumerate(rows):
                label = ["1" if row[20] == "2" else "0"] if party == "lender" else []
                writer.writerow([f"G{i:04d}", *(row[k] for k in index), *label])
        out[party] = path
    return out


@pytest.mark.slow
def test_statlog_german_trains_and_scores_in_plain_mode_without_a_categorical_key(
    tmp_path: Path,
) -> None:
    if not GERMAN.is_file():
        pytest.skip(f"Statlog German data not found at {GERMAN}")
    fed = write_federation(tmp_path, write_german(tmp_path))
    assert "categorical" not in fed.read_text() and "[binning]" not in fed.read_text()
    out = tmp_path / "run"

    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")

    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows_aligned"] == 997 and metrics["auc"] > 0.7
    part = json.loads((out / "model" / "ecommerce.json").read_text())
    assert part["encoder"]["kind"] == "onehot"
    assert "A13" in part["feature_names"]  # age stays one standardized number
    assert any(name.startswith("A4=A4") for name in part["feature_names"])
    assert len(part["weights"]) == len(part["feature_names"]) > len(GERMAN_SPLIT["ecommerce"])
    ids = tmp_path / "ids.csv"
    ids.write_text("id\nG0000\nG0001\nG0002\n", encoding="utf-8")
    scores = tmp_path / "scores.csv"
    scored = fedcredit(
        "score", str(fed), "--model", str(out / "model"), "--ids", str(ids),
        "--out", str(scores), "--json", "--allow-small-keys",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    rows = list(csv.DictReader(scores.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["G0000", "G0001", "G0002"]
    assert all(0 < float(r["probability"]) < 1 for r in rows)


@pytest.mark.slow
def test_the_batch_size_check_counts_the_one_hot_columns(tmp_path: Path) -> None:
    host = tmp_path / "host.csv"
    with open(host, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "shop", *(f"x{j}" for j in range(62))])
        writer.writerows(
            [f"C{i:04d}", f"S{min(i % 10 // 3, 2)}", *((i * (j + 3)) % 7 for j in range(62))]
            for i in range(600)
        )
    lender = write_lender_numbers(tmp_path / "lender.csv", 600)
    # 64 rows per batch is above the 63 raw columns of the host, not its 64 encoded ones (three
    # shops of 30 % or more, so two design columns that hold enough rows of every batch).
    fed = write_federation(tmp_path, {"lender": lender, "host": host}, batch=64, epochs=1)

    result = fedcredit("run", str(fed), "--out", str(tmp_path / "run"), "--allow-small-keys")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "batch_size: 64 must be larger than the 64 features of party 'host'" in result.stderr


def write_lender_numbers(path: Path, rows: int) -> Path:
    rng = random.Random(9)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "age", "default"])
        writer.writerows([f"C{i:04d}", rng.randint(20, 70), rng.randint(0, 1)] for i in range(rows))
    return path


@pytest.mark.slow
def test_statlog_german_trains_trees_with_category_maps_at_every_party(tmp_path: Path) -> None:
    if not GERMAN.is_file():
        pytest.skip(f"Statlog German data not found at {GERMAN}")
    fed = write_federation(tmp_path, write_german(tmp_path))
    fed.write_text(
        fed.read_text()
        + '\n[model]\nfamily = "trees"\n\n[trees]\ntrees = 3\ndepth = 2\nmode = "mix"\n',
        encoding="utf-8",
    )
    out = tmp_path / "run"

    result = fedcredit("run", str(fed), "--out", str(out), "--json", "--allow-small-keys")

    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows_aligned"] == 997 and metrics["auc"] > 0.65
    lender = json.loads((out / "model" / "lender.json").read_text())
    # A1 (checking account) and A3 (credit history) are text: category maps, not edges.
    names = lender["feature_names"]
    assert {names[int(j)] for j in lender["categories"]} == {"A1", "A3"}
    assert all(lender["edges"][int(j)] == [] for j in lender["categories"])
    assert lender["trees"][0]["own"].get("left_set")  # the lender's own tree: category groups
    partner = json.loads((out / "model" / "ecommerce.json").read_text())
    plain = set(partner["feature_names"]) - {
        partner["feature_names"][int(j)] for j in partner["categories"]
    }
    assert plain == {"A13"}  # every text column of the partner's ten has a category map, not age
    assert "left_set" not in json.dumps(partner["trees"])  # a partner's cuts keep their order
    ids = tmp_path / "ids.csv"
    ids.write_text("id\nG0000\nG0001\nG0002\n", encoding="utf-8")
    scores = tmp_path / "scores.csv"
    scored = fedcredit(
        "score", str(fed), "--model", str(out / "model"), "--ids", str(ids),
        "--out", str(scores), "--json", "--allow-small-keys",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    rows = list(csv.DictReader(scores.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["G0000", "G0001", "G0002"]
    assert all(0 < float(r["probability"]) < 1 for r in rows)
