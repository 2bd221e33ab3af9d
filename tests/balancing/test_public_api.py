from __future__ import annotations

import tidegate.balancing as balancing


def test_public_api_is_what_init_exports() -> None:
    assert sorted(balancing.__all__) == sorted(
        [
            "OPERATOR",
            "Event",
            "Instance",
            "Pool",
            "Scheduler",
            "State",
            "StateChange",
            "make_scheduler",
            "next_state",
            "ramp_factor",
        ]
    )
    for name in balancing.__all__:
        assert getattr(balancing, name) is not None
