"""Bad [trees] values are refused, naming the key."""

from __future__ import annotations

import pytest

from fedcredit.errors import ConfigError
from fedcredit.protocol.family import get_family
from fedcredit.protocol.trees.schedule import JOINT, MIX
from fedcredit.protocol.trees.settings import TreeSettings, from_table


@pytest.mark.parametrize(
    ("key", "value"),
    [("trees", 0), ("depth", 9), ("learning_rate", 0.0), ("bins", 1), ("l2", -1.0),
     ("min_child_weight", -0.5), ("min_rows", -1), ("mode", "split"), ("subsample", 1.5),
     ("depth", 2.5), ("trees", True)],
)  # fmt: skip
def test_a_bad_value_is_refused_naming_its_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"\[trees\] {key}"):
        from_table({key: value}, "federation.toml")


def test_an_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown key 'depht'"):
        from_table({"depht": 3}, "federation.toml")


def test_train_keys_apply_and_are_named_in_their_own_table() -> None:
    assert from_table({}, "f.toml", {"seed": 11, "epochs": 4}).seed == 11
    with pytest.raises(ConfigError, match=r"\[train\] test_fraction"):
        from_table({}, "f.toml", {"test_fraction": 1.0})


def test_the_defaults_are_the_issues() -> None:
    s = TreeSettings()
    assert (s.trees, s.depth, s.learning_rate, s.bins, s.l2, s.min_child_weight, s.mode) == (
        30, 3, 0.3, 32, 1.0, 1.0, "mix",
    )  # fmt: skip


def test_the_family_is_registered_and_its_schedule_decrypts_nothing() -> None:
    family = get_family("trees")
    assert family.settings is TreeSettings
    assert family.schedule(TreeSettings(mode="joint")) is JOINT
    assert family.schedule(TreeSettings()) is MIX
    assert JOINT.decryption_steps() == () and MIX.decryption_steps() == ()
