"""PSI lists as one buffer (issue 16): the same points, digests and refusals as lists of bytes."""

from __future__ import annotations

import pytest

from fedcredit.errors import CryptoError, ProtocolError
from fedcredit.psi import PointBuffer, PSIKey, PSIParty, blind, hash_ids, hash_points, intersect
from fedcredit.psi.ring import list_digest

NON_CANONICAL = (2**255 - 1).to_bytes(32, "little")


def ids(n: int) -> list[str]:
    return [f"c-{i}" for i in range(n)]


def test_hash_points_holds_the_points_of_hash_ids_in_one_buffer() -> None:
    points = hash_points(ids(3000), "job-b1")

    assert isinstance(points, PointBuffer)
    assert len(points.data) == 32 * 3000
    assert list(points) == hash_ids(ids(3000), "job-b1")
    assert points[-1] == hash_ids(ids(3000), "job-b1")[-1]


def test_blinding_a_buffer_gives_the_list_s_points_in_threads_and_alone() -> None:
    listed = hash_ids(ids(5000), "job-b2")
    key = PSIKey.generate()

    two = blind(PointBuffer.of(listed), key, workers=2)
    assert isinstance(two, PointBuffer)
    assert two == blind(listed, key, workers=1)
    assert list(two) == list(blind(listed, key, workers=1))


def test_a_buffer_s_digest_is_its_list_s() -> None:
    listed = hash_ids(ids(40), "job-b3")

    assert list_digest(PointBuffer.of(listed)) == list_digest(listed)
    assert list_digest(PointBuffer.of(listed[1:])) != list_digest(listed)


def test_an_invalid_point_in_a_buffer_is_refused_naming_its_index() -> None:
    listed = hash_ids(ids(4000), "job-b4")
    listed[3001] = NON_CANONICAL

    with pytest.raises(CryptoError, match="index 3001: not a canonical"):
        blind(PointBuffer(b"".join(listed)), PSIKey.generate(), workers=2)
    with pytest.raises(CryptoError, match="index 0"):
        PSIParty(["a"], "job-b4", 3).relay(PointBuffer(NON_CANONICAL))


def test_a_buffer_must_hold_whole_points() -> None:
    with pytest.raises(ValueError, match="not whole points"):
        PointBuffer(b"x" * 33)
    with pytest.raises(IndexError):
        PointBuffer(b"").__getitem__(0)


def test_intersecting_buffers_gives_the_lists_common_values_sorted() -> None:
    sets = [sorted(hash_ids(ids(n), "job-b5")) for n in (300, 200, 250)]

    common = intersect([PointBuffer.of(values) for values in sets])

    assert isinstance(common, PointBuffer)
    assert common == intersect(sets)
    assert list(common) == sorted(hash_ids(ids(200), "job-b5"))


def test_an_unsorted_or_repeating_buffer_is_refused_as_a_list_is() -> None:
    points = sorted(hash_ids(ids(5), "job-b6"))
    # Points equal in their first 8 bytes, told apart only in a later word.
    low, high = b"\x01" * 8 + b"\x00" * 24, b"\x01" * 8 + b"\x00" * 23 + b"\x05"
    cases = [
        ([points, points[::-1]], "set 1 is not sorted at position 1"),
        ([[points[0], points[0]], points], "set 0 repeats at position 1"),
        ([points, [*points[:3], points[2], *points[4:]]], "set 1 repeats at position 3"),
        ([[low, high], [high, low]], "set 1 is not sorted at position 1"),
    ]
    for sets, message in cases:
        with pytest.raises(ProtocolError, match=message):
            intersect(sets, validate=False)
        with pytest.raises(ProtocolError, match=message):
            intersect([PointBuffer.of(values) for values in sets], validate=False)
    assert intersect([PointBuffer.of([low, high])] * 2, validate=False) == [low, high]
