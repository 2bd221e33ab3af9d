"""The process's open-file limit: raised to the hard limit at start, and what it leaves each listener.

A connection costs a file descriptor, and a proxied one two (client and instance). systemd and
most shells start services with a soft RLIMIT_NOFILE of 1,024: at that figure the gateway served
about 750 concurrent clients, and new connections beyond failed in accept() (EMFILE). HAProxy
and Go programs raise their own soft limit to the hard one at start; so does tidegate.

The default `max_connections` of a listener (the formula, documented in docs/configuration.md):

    (limit - RESERVED) // (2 * listeners)

RESERVED descriptors stay for everything but connections (listening sockets, the admin API,
health checks, logs, spool files); each client connection may hold one to an instance as well,
hence the 2; and the listeners share what is left equally. With the usual hard limit of 524,288
and one listener that is 261,632 clients; with 1,024 it is 448.

Pure but for `raise_nofile`, which asks the kernel.
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tidegate.config.model import Config

RESERVED: Final = 128


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # the kernel's default nr_open: no soft limit may exceed it
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        except (ValueError, OSError):
            return soft, soft  # not allowed here (a container's policy): serve with what there is
        return soft, hard
    return soft, soft


def open_files() -> int:
    """The soft RLIMIT_NOFILE now (an unlimited one counted as the kernel's 1 << 20)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def default_max_connections(limit: int, listeners: int) -> int:
    """A listener's share of `limit` open files, each client counted with its instance's."""
    return max(1, (limit - RESERVED) // (2 * max(1, listeners)))


def listeners(config: Config) -> int:
    """The stream listeners a config opens: [[http]], [[tcp]] and DNS-over-TCP."""
    return len(config.http) + len(config.tcp) + (1 if config.dns is not None else 0)
