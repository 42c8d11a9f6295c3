"""The federation file's [policy] and the lender's batching keys: parsed, or refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.config import load_federation
from fedcredit.decision import Policy
from fedcredit.errors import ConfigError
from tests.unit.test_config import VALID


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "fed.toml"
    path.write_text(VALID + extra)
    return path


def test_a_file_without_a_policy_table_has_no_policy(tmp_path: Path) -> None:
    fed = load_federation(write(tmp_path, ""))

    assert fed.policy is None


def test_an_empty_policy_table_takes_every_default(tmp_path: Path) -> None:
    fed = load_federation(write(tmp_path, "\n[policy]\n"))

    assert fed.policy == Policy()


def test_policy_keys_are_read_from_the_file(tmp_path: Path) -> None:
    text = "\n[policy]\napprove_score = 620\nlimit_max = 30000\ninstalments = [3, 6]\n"

    policy = load_federation(write(tmp_path, text)).policy

    assert policy is not None
    assert (policy.approve_score, policy.limit_max, policy.instalments) == (620.0, 30000, (3, 6))


@pytest.mark.parametrize(
    ("lines", "key", "words"),
    [
        ("apr_max = 0.3", "apr_max", "0.24"),
        ("refer_score = 650", "refer_score", "approve_score"),
        ("limit_min = 60000", "limit_min", "limit_max"),
        ("instalments = []", "instalments", "at least one"),
        ("instalments = [6, 3]", "instalments", "increasing"),
        ("apr_min = 0.2\napr_max = 0.1", "apr_min", "apr_max"),
        ('approve_score = "high"', "approve_score", "number"),
        ("max_other_lenders = -1", "max_other_lenders", "at least 0"),
    ],
)
def test_a_bad_policy_is_refused_naming_file_table_and_key(
    tmp_path: Path, lines: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_federation(write(tmp_path, f"\n[policy]\n{lines}\n"))

    message = str(info.value)
    assert message.startswith("fed.toml") or "fed.toml:" in message
    assert f"[policy] {key}" in message and words in message
    assert "\n" not in message


def test_an_unknown_policy_key_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[policy\].*'aprmax'.*did you mean 'apr_max'"):
        load_federation(write(tmp_path, "\n[policy]\naprmax = 0.2\n"))


def test_a_policy_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fed.toml"
    path.write_text('policy = "strict"\n' + VALID)

    with pytest.raises(ConfigError, match=r"\[policy\] must be a table"):
        load_federation(path)


def test_batching_keys_are_read_and_bounded(tmp_path: Path) -> None:
    fed = load_federation(write(tmp_path, "\n[scoring]\nbatch_wait_ms = 0\n"))
    assert fed.scoring.batch_wait_ms == 0.0

    with pytest.raises(ConfigError, match=r"\[scoring\] batch_max_applicants"):
        load_federation(write(tmp_path, "\n[scoring]\nbatch_max_applicants = 0\n"))
