"""The OPRF: blinded evaluation equals direct evaluation, and bad points are refused."""

from __future__ import annotations

import pytest

from fedcredit.debt.oprf import Blinding, OPRFKey, hash_to_point, multiply
from fedcredit.errors import ProtocolError


def test_unblinded_tags_equal_the_lenders_own_tags() -> None:
    key = OPRFKey.generate()
    ids = [f"applicant-{i}" for i in range(5)]
    blinding = Blinding.of(ids)

    tags = blinding.tags(key.evaluate(blinding.points))

    assert tags == key.tags(ids)


def test_blinded_points_differ_between_two_queries_for_the_same_person() -> None:
    first, second = Blinding.of(["same"]), Blinding.of(["same"])

    assert first.points != second.points
    assert first.points[0] != hash_to_point("same")


def test_different_keys_give_different_tags_and_ids_are_stripped() -> None:
    one, two = OPRFKey.generate(), OPRFKey.generate()

    assert one.tags(["x"]) != two.tags(["x"])
    assert one.tags([" x "]) == one.tags(["x"])


def test_a_long_batch_is_evaluated_in_order_across_threads() -> None:
    key = OPRFKey.generate()
    ids = [str(i) for i in range(3000)]
    blinding = Blinding.of(ids)

    assert blinding.tags(key.evaluate(blinding.points)) == key.tags(ids)


@pytest.mark.parametrize("point", [bytes(32), b"\xff" * 32, b"short"])
def test_an_invalid_point_is_refused(point: bytes) -> None:
    with pytest.raises(ProtocolError):
        multiply(OPRFKey.generate().scalar, point)


def test_an_answer_of_the_wrong_length_is_refused() -> None:
    blinding = Blinding.of(["a", "b"])

    with pytest.raises(ProtocolError, match="answered 1 points for 2"):
        blinding.tags(blinding.points[:1])
