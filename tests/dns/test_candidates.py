"""What a pool offers DNS (dns/candidates.py): slow-start weights, one record per address, and
the all-at-ramp-start fallback. Each assertion names the mistake it catches."""

from __future__ import annotations

from tidegate.balancing import Pool
from tidegate.dns.candidates import candidates_of


def pool() -> Pool:
    p = Pool("web", "weighted-round-robin")
    p.add("10.0.0.1:80", "10.0.0.1", 80, 4)
    p.add("10.0.0.1:81", "10.0.0.1", 81, 2)
    p.add("10.0.0.2:80", "10.0.0.2", 80, 3)
    return p


def weights(p: Pool) -> dict[str, float]:
    return {e.ip: e.weight for e in candidates_of(p).v4}


def test_two_instances_on_one_address_are_one_record_with_their_summed_weight() -> None:
    c = candidates_of(pool())
    assert [(e.ip, e.weight, e.instances) for e in c.v4] == [
        ("10.0.0.1", 6.0, ("10.0.0.1:80", "10.0.0.1:81")),  # not 4 or 2 (one of the two)
        ("10.0.0.2", 3.0, ("10.0.0.2:80",)),
    ]
    assert not c.fail_open


def test_a_ramping_instance_counts_with_its_slow_start_weight() -> None:
    p = pool()
    p.set_ramp(p.get("10.0.0.1:80"), 0.25)  # type: ignore[arg-type]
    assert weights(p) == {"10.0.0.1": 1.0 + 2.0, "10.0.0.2": 3.0}  # not the configured 4 + 2


def test_every_instance_at_the_very_start_of_its_ramp_is_weighed_alike() -> None:
    p = pool()
    for inst in p:
        p.set_ramp(inst, 0.0)
    # One per instance, summed per address: the address answers rather than nothing.
    assert weights(p) == {"10.0.0.1": 2.0, "10.0.0.2": 1.0}
