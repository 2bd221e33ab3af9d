"""Every scheduler docs/configuration.md names, and the IPVS names the LVS layer asks for; importing
this package registers them all."""

from tidegate.balancing.schedulers import (  # noqa: F401
    consistent_hash,
    least_connections,
    maglev,
    p2c,
    round_robin,
    source_hash,
    weighted_random,
    weighted_round_robin,
)
