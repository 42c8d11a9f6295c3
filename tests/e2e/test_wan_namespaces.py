"""A job over a network that is not loopback (issue 16): one network namespace per node.

Every node (coordinator, lender, e-commerce, payments) runs in its own namespace at its own
private address (10.231.0.x, which exists only inside the namespaces this test makes), joined
through a hub by veth pairs limited to 100 Mbit/s with tbf, with 50 ms of round trip (netem
where the kernel has it, else a delaying TCP relay per node: ``benchmarks/netns.py``). The
certificates are made as in a deployment (``certs ca``, ``certs request`` per node, ``certs
sign``, every fingerprint pinned) and the driver runs from the coordinator's namespace.

The job (alignment, binning, two epochs, evaluation) must finish, with the weights of the same
job on loopback at the same seed (``[train] seed``, binning noise off), then answer online
scoring with no error; every namespace is removed after. Without root or iproute2 the test
skips, naming the reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.netns import Network, skip_reason
from benchmarks.wan import (
    NODES,
    PARTIES,
    PORTS,
    model_weights,
    one_network,
    prepare,
)

REASON = skip_reason()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(REASON is not None, reason=f"network namespaces: {REASON}"),
]


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.split()}


def test_a_job_across_namespaces_at_50_ms_gives_the_loopback_model(tmp_path: Path) -> None:
    addresses = {n: f"{Network(NODES).address(n)}:{PORTS[n]}" for n in NODES}
    fed = prepare(
        tmp_path, rows=1500, epochs=2, batch=400, key_bits=1024, seed=7, addresses=addresses
    )
    with Network.loopback(NODES, work_dir=tmp_path / "loopback-net") as net:
        loop = one_network(net, fed, "loopback", requests=0, batch_ids=0)
    with Network(NODES, rtt_ms=50, mbit=100, work_dir=tmp_path / "wan-net") as net:
        made = set(net.namespaces)
        assert net.delay_mode in ("netem", "relay")
        assert len(made) == len(NODES) + 1  # one per node and the hub
        wan = one_network(net, fed, "wan", requests=10, batch_ids=20)
    print(
        f"delay by {net.delay_mode}; job {loop['result'].metrics['seconds']:.1f} s on loopback, "
        f"{wan['result'].metrics['seconds']:.1f} s at 50 ms; scoring p50 "
        f"{wan['scoring']['p50_ms']} ms"
    )

    # The traffic really crossed every node's link (veth counters, headers included).
    for name in NODES:
        assert wan["veth_bytes"][name]["tx"] > 50_000, name
        assert wan["veth_bytes"][name]["rx"] > 50_000, name
    # Deadlines, keepalive and retries held: the job finished, scoring had no error.
    assert wan["result"].metrics["epochs"] == loop["result"].metrics["epochs"] == 2
    assert wan["scoring"]["errors"] == 0 and wan["scoring"]["requests"] == 10
    # 50 ms of round trip at least once per score (lender -> partners -> coordinator).
    assert wan["scoring"]["p50_ms"] >= 50
    # The same model as on loopback, weight for weight.
    got, want = model_weights(wan["result"]), model_weights(loop["result"])
    assert set(got) == set(PARTIES)
    for party in PARTIES:
        assert got[party] == pytest.approx(want[party], abs=1e-9), party
    assert wan["result"].metrics["auc"] == pytest.approx(loop["result"].metrics["auc"], abs=1e-12)
    # Nothing is left behind.
    assert not made & namespaces()
