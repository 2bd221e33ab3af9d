"""Every scheduler named in interface.md; importing this package registers them all."""

from tidegate.balancing.schedulers import round_robin  # noqa: F401
