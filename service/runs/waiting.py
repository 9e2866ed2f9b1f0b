"""Waiting on many descriptors at once: the launcher's batches, their ends and their output."""

from __future__ import annotations

import select


def readable(fds: list[int], timeout: float) -> set[int]:
    """Those of `fds` that are readable (or closed at the other end) within `timeout` seconds.

    poll(), not select(): an instance running hundreds of batches watches descriptors numbered
    past select's FD_SETSIZE (1024), where select() raises instead of waiting.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return {fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)}
