"""fedcredit.psi: ring ECDH-PSI on Curve25519 (X25519), run in one process."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.errors import ConfigError, CryptoError, DataError, ProtocolError
from fedcredit.psi import (
    POINT_BYTES,
    PSIKey,
    PSIParty,
    blind,
    check_points,
    hash_and_blind,
    hash_ids,
    intersect,
    next_holder,
    run_local_psi,
)
from fedcredit.psi.group import (
    FIELD_PRIME,
    GROUP_ORDER,
    HASH_DOMAIN,
    _check,
    clamped_representative,
    hash_to_field,
    map_to_curve,
    on_curve,
)

# A canonical u is below p = 2**255 - 19; 2**255 - 1 (top bit clear) is not.
NON_CANONICAL = b"\xff" * 31 + b"\x7f"
ZERO = bytes(32)  # the point of order 2
ONE = (1).to_bytes(32, "little")  # a point of order 4

# RFC 9380 appendix J.7.2 (curve25519_XMD:SHA-512_ELL2_NU_): the field element u
# of each message, Q = map_to_curve(u) and P = 8 Q, all as u-coordinates.
RFC9380_VECTORS = [
    (
        "608d892b641f0328523802a6603427c26e55e6f27e71a91a478148d45b5093cd",
        "51125222da5e763d97f3c10fcc92ea6860b9ccbbd2eb1285728f566721c1e65b",
        "1bb913f0c9daefa0b3375378ffa534bda5526c97391952a7789eb976edfe4d08",
    ),
    (
        "46f5b22494bfeaa7f232cc8d054be68561af50230234d7d1d63d1d9abeca8da5",
        "7d56d1e08cb0ccb92baf069c18c49bb5a0dcd927eff8dcf75ca921ef7f3e6eeb",
        "7c22950b7d900fa866334262fcaea47a441a578df43b894b4625c9b450f9a026",
    ),
    (
        "235fe40c443766ce7e18111c33862d66c3b33267efa50d50f9e8e5d252a40aaa",
        "3fbe66b9c9883d79e8407150e7c2a1c8680bee496c62fabe4619a72b3cabe90f",
        "31ad08a8b0deeb2a4d8b0206ca25f567ab4e042746f792f4b7973f3ae2096c52",
    ),
]


def ladder(scalar: int, u: int) -> int:
    """RFC 7748's Montgomery ladder with no clamping: the reference for any scalar."""
    p = FIELD_PRIME
    x2, z2, x3, z3, swap = 1, 0, u, 1, 0
    for bit in reversed(range(255)):
        k_t = (scalar >> bit) & 1
        if swap ^ k_t:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = k_t
        a, b, c, d = x2 + z2, x2 - z2, x3 + z3, x3 - z3
        aa, bb, da, cb = a * a, b * b, d * a, c * b
        e = aa - bb
        x3, z3 = (da + cb) ** 2 % p, u * (da - cb) ** 2 % p
        x2, z2 = aa * bb % p, e * (aa + 121665 * e) % p
    if swap:
        x2, z2 = x3, z3
    return x2 * pow(z2, p - 2, p) % p


def as_int(point: bytes) -> int:
    return int.from_bytes(point, "little")


def ids(prefix: str, numbers: range) -> list[str]:
    return [f"{prefix}{n:05d}" for n in numbers]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ([["a", "b", "c"], ["c", "d", "b"]], ["b", "c"]),
        ([["a", "b", "c", "d"], ["d", "c", "x"], ["y", "c", "d", "a"]], ["c", "d"]),
        (
            [["1", "2", "3", "4", "5"], ["5", "4", "3"], ["3", "5", "9"], ["5", "3", "0"]],
            ["3", "5"],
        ),
    ],
    ids=["two-parties", "three-parties", "four-parties"],
)
def test_every_party_gets_the_exact_intersection(
    sets: list[list[str]], expected: list[str]
) -> None:
    results = run_local_psi(sets, "job-1")

    assert [result.ids for result in results] == [expected] * len(sets)
    assert [result.own_size for result in results] == [len(s) for s in sets]
    assert all(result.intersection_size == len(expected) for result in results)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.sets(st.text(alphabet="abcdef", min_size=1, max_size=3), max_size=12),
        min_size=2,
        max_size=4,
    )
)
def test_result_equals_the_plain_set_intersection(sets: list[set[str]]) -> None:
    results = run_local_psi([sorted(s) for s in sets], "job-prop")

    expected = sorted(set.intersection(*sets))
    assert all(result.ids == expected for result in results)


def test_larger_sets_intersect_exactly_in_the_same_order_everywhere() -> None:
    rng = random.Random(5)
    universe = ids("C", range(6000))
    sets = [rng.sample(universe, 4500) for _ in range(3)]
    expected = sorted(set(sets[0]) & set(sets[1]) & set(sets[2]))

    results = run_local_psi(sets, "job-2", workers=2)

    assert results[0].ids == expected
    assert results[1].ids == results[0].ids == results[2].ids


def test_disjoint_sets_give_an_empty_intersection() -> None:
    results = run_local_psi([["a", "b"], ["c", "d"], ["a", "d"]], "job-3")

    assert [result.ids for result in results] == [[], [], []]


def test_ids_sort_as_strings_not_numbers() -> None:
    results = run_local_psi([["10", "9", "100"], ["9", "100", "10"]], "job-4")

    assert results[0].ids == ["10", "100", "9"]


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(DataError, match="duplicate id 'b' at index 2"):
        run_local_psi([["a", "b", "b"], ["a"]], "job-5")


def test_a_single_party_is_refused() -> None:
    with pytest.raises(ProtocolError):
        run_local_psi([["a"]], "job-6")


def test_empty_job_id_is_refused() -> None:
    with pytest.raises(ConfigError):
        hash_ids(["a"], "")


def test_hashing_depends_on_the_job_id_and_is_deterministic() -> None:
    first = hash_ids(["a", "b"], "job-a")

    assert hash_ids(["a", "b"], "job-a") == first
    assert hash_ids(["a", "b"], "job-b")[0] != first[0]
    assert all(on_curve(point) for point in first)


@pytest.mark.parametrize(("u", "q", "cleared"), RFC9380_VECTORS)
def test_elligator_map_matches_the_rfc_9380_vectors(u: str, q: str, cleared: str) -> None:
    assert map_to_curve(int(u, 16)) == int(q, 16)
    assert ladder(8, int(q, 16)) == int(cleared, 16)


def test_batched_hashing_equals_the_map_one_id_at_a_time() -> None:
    values = ids("h", range(2500))  # more than one batch of 1,024
    job = b"job-h"
    tag = HASH_DOMAIN
    expected = [
        map_to_curve(
            hash_to_field(
                len(job).to_bytes(4, "big") + job + len(v).to_bytes(4, "big") + v.encode(), tag
            )
        )
        for v in values
    ]

    assert [as_int(point) for point in hash_ids(values, "job-h")] == expected


def test_libsodium_x25519_equals_the_reference_ladder() -> None:
    point = hash_ids(["r"], "job-r")[0]
    key = PSIKey.generate()

    assert as_int(blind([point], key)[0]) == ladder(key.value, as_int(point))


def test_blinding_commutes_so_order_of_keys_does_not_matter() -> None:
    points = hash_ids(ids("x", range(50)), "job-7")
    k1, k2 = PSIKey.generate(), PSIKey.generate()

    assert blind(blind(points, k1), k2) == blind(blind(points, k2), k1)
    assert hash_and_blind(ids("x", range(50)), "job-7", k1) == blind(points, k1)


def test_a_mask_and_its_inverse_cancel_on_blinded_points() -> None:
    key = PSIKey.generate()
    blinded = blind(hash_ids(ids("x", range(20)), "job-8"), key)
    mask = PSIKey.generate_mask(key)

    assert blind(blind(blinded, mask), mask.inverse()) == blinded
    assert blind(blinded, key.times(mask)) == blind(blind(blinded, key), mask)


def test_clamped_representative_acts_as_its_residue() -> None:
    rng = random.Random(3)
    point = as_int(blind(hash_ids(["c"], "job-c"), PSIKey.generate())[0])  # order l
    found = 0
    for _ in range(12):
        residue = rng.randrange(1, GROUP_ORDER)
        value = clamped_representative(residue)
        if value is None:
            continue
        found += 1
        assert value % 8 == 0 and 2**254 <= value < 2**255
        assert ladder(value, point) == ladder(residue, point)
    assert found >= 2


def test_a_key_whose_inverse_has_no_clamped_form_is_refused() -> None:
    while True:
        key = PSIKey.generate()
        if clamped_representative(pow(key.value, -1, GROUP_ORDER)) is None:
            break

    with pytest.raises(CryptoError, match="no clamped X25519 form"):
        key.inverse()


def test_a_twist_point_stays_on_the_twist_so_it_can_match_no_curve_point() -> None:
    twist = next(u for u in range(2, 100) if not on_curve(u.to_bytes(32, "little")))
    key = PSIKey.generate()

    assert not on_curve(blind([twist.to_bytes(32, "little")], key)[0])
    assert all(on_curve(point) for point in blind(hash_ids(["a", "b"], "job-t"), key))


def test_parallel_blinding_matches_serial_and_keeps_order() -> None:
    points = hash_ids(ids("p", range(5000)), "job-9", workers=2)
    key = PSIKey.generate()

    assert blind(points, key, workers=2) == blind(points, key, workers=1)


@pytest.mark.parametrize("bad", [NON_CANONICAL, ZERO, ONE, b"\x01" * 31, b"x" * 33])
def test_blinding_refuses_invalid_points_naming_the_index(bad: bytes) -> None:
    points = hash_ids(["a", "b", "c"], "job-10")
    points[1] = bad

    with pytest.raises(CryptoError, match="index 1"):
        blind(points, PSIKey.generate())


@pytest.mark.parametrize("bad", [NON_CANONICAL, ZERO, ONE, b"\x01" * 31])
def test_check_points_refuses_invalid_points(bad: bytes) -> None:
    with pytest.raises(CryptoError, match="index 0"):
        check_points([bad])


def test_relay_refuses_an_invalid_point_from_a_peer() -> None:
    party = PSIParty(["a"], "job-11", 3)

    with pytest.raises(CryptoError, match="invalid curve25519 point at index 0"):
        party.relay([NON_CANONICAL])


def test_intersect_refuses_invalid_points() -> None:
    good = sorted(hash_ids(["a", "b"], "job-12"))
    bad = sorted([good[0], NON_CANONICAL])

    with pytest.raises(CryptoError, match="PSI set 1"):
        intersect([good, bad])


def test_intersect_refuses_unsorted_or_repeated_sets() -> None:
    points = sorted(hash_ids(["a", "b"], "job-13"))

    with pytest.raises(ProtocolError, match="set 1 is not sorted"):
        intersect([points, points[::-1]])
    with pytest.raises(ProtocolError, match="set 0 repeats at position 1"):
        intersect([[points[0], points[0]], points])


def test_intersect_returns_common_values_sorted() -> None:
    a, b, c = sorted(hash_ids(["a", "b", "c"], "job-14"))

    assert intersect([[a, b, c], [a, c]]) == [a, c]


def test_party_steps_out_of_order_are_refused() -> None:
    party = PSIParty(["a"], "job-15", 2)

    with pytest.raises(ProtocolError, match="out of order"):
        party.finish([])
    party.start()
    with pytest.raises(ProtocolError, match="came back with 0 points"):
        party.finish([])


def test_resolve_refuses_a_value_the_party_never_sent() -> None:
    first, second = PSIParty(["a"], "job-16", 2), PSIParty(["a"], "job-16", 2)
    first_list, second_list = first.start(), second.start()
    first.finish(second.relay(first_list))
    stranger = hash_ids(["zzz"], "job-16")

    with pytest.raises(ProtocolError, match="never sent"):
        first.resolve(stranger)
    assert len(second_list) == 1


def test_resolve_maps_common_values_back_to_ids_and_refuses_repeats() -> None:
    # The finished list is kept as sorted numpy rows (issue 16): each value finds its own row.
    ids = [f"id-{i}" for i in range(300)]
    first, second = PSIParty(ids, "job-16b", 2), PSIParty([*ids[100:], "x"], "job-16b", 2)
    first_list, second_list = first.start(), second.start()
    f_first = first.finish(second.relay(first_list))
    f_second = second.finish(first.relay(second_list))
    common = intersect([f_first, f_second])

    assert f_first == sorted(f_first) and len(set(f_first)) == 300
    with pytest.raises(ProtocolError, match="twice"):
        first.resolve([common[0], common[0]])
    with pytest.raises(ProtocolError, match=r"never sent \(index 1\)"):
        first.resolve([common[0], b"short"])
    assert first.resolve(common).ids == sorted(ids[100:])
    assert second.resolve(common).ids == sorted(ids[100:])


def test_a_list_coming_back_with_a_repeated_point_is_refused() -> None:
    first, second = PSIParty(["a", "b"], "job-16c", 2), PSIParty(["a"], "job-16c", 2)
    back = second.relay(first.start())

    with pytest.raises(ProtocolError, match="repeated points"):
        first.finish([back[0], back[0]])


def test_three_party_lists_leave_masked_so_the_last_relay_cannot_match_them() -> None:
    # Party 2 is the last to blind party 0's list; with the one-time mask its output
    # must not equal the final F value of the shared id, which party 2 also holds.
    parties = [PSIParty(["shared"], "job-17", 3) for _ in range(3)]
    lists = [party.start() for party in parties]
    for hop in (1, 2):
        lists = [parties[next_holder(i, hop, 3)].relay(lists[i]) for i in range(3)]
    seen_by_party_2 = lists[0]
    finals = [party.finish(points) for party, points in zip(parties, lists, strict=True)]

    assert finals[0] == finals[1] == finals[2]
    assert seen_by_party_2 != finals[2]


def test_ring_routing_visits_every_other_party_once() -> None:
    holders = [next_holder(1, hop, 4) for hop in range(1, 4)]

    assert holders == [2, 3, 0]
    with pytest.raises(ProtocolError):
        next_holder(0, 4, 4)


def test_keys_are_validated() -> None:
    with pytest.raises(CryptoError):
        PSIKey(bytes(32))
    with pytest.raises(CryptoError):
        PSIKey(b"\xff" * 32)
    with pytest.raises(CryptoError):  # not a multiple of 8
        PSIKey.from_value(2**254 + 1)
    assert len(PSIKey.generate().scalar) == POINT_BYTES
    assert "scalar" not in repr(PSIKey.generate()).split("(", 1)[1]


EDGE_POINTS = [
    (FIELD_PRIME - 1).to_bytes(32, "little"),  # canonical, but of small order
    (FIELD_PRIME - 20).to_bytes(32, "little"),  # canonical
    FIELD_PRIME.to_bytes(32, "little"),  # the first non-canonical value
    (FIELD_PRIME + 18).to_bytes(32, "little"),  # 2^255 - 1
    (2**255).to_bytes(33, "little")[:32],  # 0: order 2
    b"\xff" * 32,  # top bit set
    (9).to_bytes(32, "little"),  # the base point
]


def _refused_one_by_one(point: bytes) -> bool:
    try:
        _check(point, 0)
    except CryptoError:
        return True
    return False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from(EDGE_POINTS))))
def test_the_vectorized_check_refuses_exactly_what_the_point_by_point_check_refuses(
    points: list[bytes],
) -> None:
    expected = next((i for i, p in enumerate(points) if _refused_one_by_one(p)), None)
    if expected is None:
        check_points(points)
    else:
        with pytest.raises(CryptoError, match=f"index {expected}:"):
            check_points(points)
