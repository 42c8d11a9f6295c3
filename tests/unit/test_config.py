"""The federation file: a valid file loads; every mistake is a ConfigError naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.config import Federation, load_federation
from fedcredit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = """
[federation]
name = "demo"
key_bits = 2048

[coordinator]
address = "127.0.0.1:50050"

[[party]]
name = "lender"
role = "lending"
address = "127.0.0.1:50051"
data = "lender.csv"
id_column = "ID"
label_column = "y"
features = ["a", "b"]
loans = "loans.csv"

[[party]]
name = "ecommerce"
role = "ecommerce"
address = "127.0.0.1:50052"
data = "data/ecommerce.csv"
id_column = "ID"

[train]
batch_size = 64
learning_rate = 0.1

[binning]
bins = 5

[tls]
cert_dir = "certs"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fed.toml"
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **kwargs: bool) -> Federation:
    return load_federation(write(tmp_path, text), **kwargs)


def edited(old: str, new: str, count: int = 1) -> str:
    assert old in VALID
    return VALID.replace(old, new, count)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "fed.toml") + ": ")
    assert "\n" not in message
    return message


def test_valid_file_loads_with_defaults(tmp_path: Path) -> None:
    fed = load_text(tmp_path, VALID)
    assert (fed.name, fed.key_bits, fed.min_overlap) == ("demo", 2048, 100)
    assert (fed.train.batch_size, fed.train.epochs, fed.train.optimizer) == (64, 10, "newton")
    assert fed.binning is not None and fed.binning.bins == 5


def test_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    fed = load_text(tmp_path, VALID)
    assert fed.party("ecommerce").data == tmp_path.resolve() / "data" / "ecommerce.csv"
    assert fed.lender.loans == tmp_path.resolve() / "loans.csv"
    assert fed.path == tmp_path.resolve() / "fed.toml"


def test_tls_defaults_follow_cert_dir(tmp_path: Path) -> None:
    tls = load_text(tmp_path, VALID).tls
    assert tls is not None
    assert tls.ca == tmp_path.resolve() / "certs" / "ca.pem"
    assert (tls.cert("lender").name, tls.key("lender").name) == ("lender.pem", "lender.key")


def test_helpers_name_lender_hosts_and_all_nodes(tmp_path: Path) -> None:
    fed = load_text(tmp_path, VALID)
    assert fed.lender.name == "lender" and fed.lender.features == ("a", "b")
    assert [h.name for h in fed.hosts] == ["ecommerce"]
    assert fed.all_names == ("lender", "ecommerce", "coordinator")
    assert fed.endpoint("coordinator").port == 50050


def test_replace_party_changes_one_party(tmp_path: Path) -> None:
    fed = load_text(tmp_path, VALID).replace_party("ecommerce", address="127.0.0.1:6000")
    assert fed.party("ecommerce").address == "127.0.0.1:6000"
    assert fed.party("lender").address == "127.0.0.1:50051"


def test_unknown_party_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no party named 'bank'"):
        load_text(tmp_path, VALID).party("bank")


def test_example_uci_file_is_valid() -> None:
    fed = load_federation(REPO / "parties" / "uci.toml")
    assert [p.name for p in fed.parties] == ["lender", "ecommerce", "payments"]
    assert fed.lender.label_column == "default.payment.next.month"
    fed.check_batch_size({p.name: len(p.features or ()) for p in fed.parties})


def test_unknown_key_names_party_and_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, edited('address = "127.0.0.1:50052"', 'adress = "x:1"'))
    assert message.endswith(
        "[[party]] #2 'ecommerce': unknown key 'adress' (did you mean 'address'?)"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[binning]", "[binning]\nbinz = 3", "[binning]: unknown key 'binz'"),
        ("[train]", "[train]\nepoch = 3", "[train]: unknown key 'epoch'"),
        ("[federation]", "[federation]\nowner = 'x'", "[federation]: unknown key 'owner'"),
        ("[tls]", "[tls]\nkey = 'x'", "[tls]: unknown key 'key'"),
        ("[tls]", "[extra]\n[tls]", "top level: unknown key 'extra'"),
    ],
)
def test_unknown_keys_are_refused_everywhere(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, edited(old, new))


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        ('name = "demo"\n', "[federation]: missing required key 'name'"),
        (
            'id_column = "ID"\nlabel_column',
            "[[party]] #1 'lender': missing required key 'id_column'",
        ),
        ('data = "data/ecommerce.csv"\n', "#2 'ecommerce': missing required key 'data'"),
        ('[coordinator]\naddress = "127.0.0.1:50050"\n', "missing required table [coordinator]"),
    ],
)
def test_missing_required_keys_are_named(tmp_path: Path, old: str, expected: str) -> None:
    new = "label_column" if old.endswith("label_column") else ""
    assert expected in error_of(tmp_path, edited(old, new))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("key_bits = 2048", 'key_bits = "2048"', "[federation] key_bits: must be an integer"),
        ("batch_size = 64", "batch_size = 6.4", "[train] batch_size: must be an integer"),
        ("batch_size = 64", "batch_size = true", "[train] batch_size: must be an integer"),
        ("learning_rate = 0.1", 'learning_rate = "0.1"', "[train] learning_rate: must be a number"),
        ('features = ["a", "b"]', 'features = "a"', "'lender' features: must be a non-empty list"),
        ('id_column = "ID"', "id_column = 1", "'lender' id_column: must be a non-empty string"),
        ("bins = 5", "bins = 1", "[binning] bins: must be between 2 and 1000"),
    ],
)
def test_wrong_types_and_values_name_the_key(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in error_of(tmp_path, edited(old, new))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("test_fraction = 1.0", "test_fraction"),
        ("test_fraction = -0.1", "test_fraction"),
        ("validation_fraction = 1.5", "validation_fraction"),
        ("test_fraction = 0.5\nvalidation_fraction = 0.5", "validation_fraction"),
        ("momentum = 1.0", "momentum"),
        ("l2 = -1", "l2"),
        ("learning_rate = 0", "learning_rate"),
        ("epochs = 0", "epochs"),
        ('optimizer = "rmsprop"', "optimizer"),
    ],
)
def test_out_of_range_training_settings_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    # The valid file sets learning_rate already; a TOML key may not appear twice.
    text = edited("learning_rate = 0.1", line)
    assert f"[train] {key}: " in error_of(tmp_path, text)


def test_batch_size_below_one_is_refused(tmp_path: Path) -> None:
    assert "[train] batch_size: must be at least 1" in error_of(
        tmp_path, edited("batch_size = 64", "batch_size = 0")
    )


def test_invalid_role_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, edited('role = "ecommerce"', 'role = "bank"'))
    assert "#2 'ecommerce' role: must be one of lending, ecommerce, payments, other" in message


def test_no_label_holder_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, edited('label_column = "y"\n', ""))
    assert "label_column: exactly one party must name a label column (found none)" in message


def test_two_label_holders_are_refused(tmp_path: Path) -> None:
    text = edited('role = "ecommerce"', 'role = "lending"\nlabel_column = "y"')
    assert "exactly one party must name a label column (found 'lender', 'ecommerce')" in (
        error_of(tmp_path, text)
    )


def test_label_holder_must_be_a_lender(tmp_path: Path) -> None:
    text = edited('role = "lending"', 'role = "payments"')
    assert "'lender' label_column: only a party with role 'lending'" in error_of(tmp_path, text)


def test_duplicate_party_names_are_refused(tmp_path: Path) -> None:
    text = edited('name = "ecommerce"', 'name = "lender"')
    assert "#2 'lender' name: duplicate party name 'lender'" in error_of(tmp_path, text)


def test_duplicate_addresses_are_refused(tmp_path: Path) -> None:
    text = edited('address = "127.0.0.1:50052"', 'address = "127.0.0.1:50051"')
    assert "'ecommerce' address: 127.0.0.1:50051 is also used by 'lender'" in error_of(
        tmp_path, text
    )


def test_party_address_equal_to_coordinators_is_refused(tmp_path: Path) -> None:
    text = edited('address = "127.0.0.1:50052"', 'address = "127.0.0.1:50050"')
    assert "is also used by 'coordinator'" in error_of(tmp_path, text)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":80", "h:x"])
def test_malformed_address_is_refused(tmp_path: Path, address: str) -> None:
    text = edited('address = "127.0.0.1:50052"', f'address = "{address}"')
    assert "'ecommerce' address: " in error_of(tmp_path, text)


def test_party_named_coordinator_is_refused(tmp_path: Path) -> None:
    text = edited('name = "ecommerce"', 'name = "coordinator"')
    assert "name: 'coordinator' is reserved" in error_of(tmp_path, text)


def test_party_name_must_fit_a_certificate(tmp_path: Path) -> None:
    text = edited('name = "ecommerce"', 'name = "E Commerce"')
    assert "name: must be a lowercase DNS label" in error_of(tmp_path, text)


def test_lender_alone_is_refused(tmp_path: Path) -> None:
    start = VALID.index('[[party]]\nname = "ecommerce"')
    text = VALID[:start] + VALID[VALID.index("[train]") :]
    assert "at least one party besides the lender" in error_of(tmp_path, text)


def test_any_number_of_feature_parties_is_accepted(tmp_path: Path) -> None:
    extra = "".join(
        f'[[party]]\nname = "p{i}"\nrole = "other"\naddress = "127.0.0.1:{6000 + i}"\n'
        f'data = "p{i}.csv"\nid_column = "ID"\n\n'
        for i in range(4)
    )
    fed = load_text(tmp_path, edited("[train]", extra + "[train]"))
    assert len(fed.hosts) == 5


def test_small_keys_need_permission(tmp_path: Path) -> None:
    text = edited("key_bits = 2048", "key_bits = 1024")
    assert "[federation] key_bits: must be at least 2048" in error_of(tmp_path, text)
    assert load_text(tmp_path, text, allow_small_keys=True).key_bits == 1024


def test_features_must_not_include_id_or_label(tmp_path: Path) -> None:
    text = edited('features = ["a", "b"]', 'features = ["a", "y"]')
    assert "'lender' features: must not list the id or label column 'y'" in error_of(tmp_path, text)


def test_party_written_as_single_table_is_refused(tmp_path: Path) -> None:
    text = edited("[[party]]", "[party]").replace("[[party]]", "[[other]]")
    with pytest.raises(ConfigError):
        load_text(tmp_path, text)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    assert "not valid TOML" in error_of(tmp_path, VALID + "\n[train\n")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_federation(tmp_path / "nope.toml")


def test_batch_size_must_exceed_every_partys_feature_count(tmp_path: Path) -> None:
    fed = load_text(tmp_path, VALID)
    fed.check_batch_size({"lender": 2, "ecommerce": 63})
    with pytest.raises(ConfigError, match="batch_size: 64 must be larger than the 64 features"):
        fed.check_batch_size({"lender": 2, "ecommerce": 64})


def test_a_partys_crypto_budget_and_randomness_stock_are_read(tmp_path: Path) -> None:
    text = edited(
        'id_column = "ID"\nlabel_column = "y"',
        'id_column = "ID"\nlabel_column = "y"\ntable_mib = 190\nrandomness_stock = 65536',
    )

    fed = load_text(tmp_path, text)

    assert (fed.lender.table_mib, fed.lender.randomness_stock) == (190.0, 65536)
    assert (fed.hosts[0].table_mib, fed.hosts[0].randomness_stock) == (None, 0)


@pytest.mark.parametrize(
    ("line", "key"),
    [("table_mib = 0", "table_mib"), ("randomness_stock = -1", "randomness_stock"),
     ('randomness_stock = "many"', "randomness_stock")],
)  # fmt: skip
def test_bad_crypto_budgets_name_the_party_and_key(tmp_path: Path, line: str, key: str) -> None:
    message = error_of(
        tmp_path,
        edited(
            'id_column = "ID"\nlabel_column = "y"', f'id_column = "ID"\nlabel_column = "y"\n{line}'
        ),
    )

    assert "'lender'" in message and key in message


def test_a_loan_files_column_names_are_mapped(tmp_path: Path) -> None:
    text = edited(
        'loans = "loans.csv"',
        'loans = "loans.csv"\nloans_id_column = "cust"\nloans_balance_column = "bal"',
    )

    fed = load_text(tmp_path, text)

    assert dict(fed.lender.loans_columns) == {"id": "cust", "outstanding_balance": "bal"}
    assert fed.hosts[0].loans_columns == ()
