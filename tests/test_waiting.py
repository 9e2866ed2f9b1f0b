"""The launcher waits on descriptors numbered past select()'s FD_SETSIZE (hundreds of batches)."""

from __future__ import annotations

import os
import select

import pytest

from service.runs.waiting import readable


def test_it_waits_on_descriptors_numbered_past_1024() -> None:
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, 1500)
    try:
        with pytest.raises(ValueError):  # what the launcher's loop met before: select() refuses it
            select.select([high], [], [], 0)
        assert readable([high], 0) == set()
        os.write(write_end, b"x")
        assert readable([high, read_end], 1) == {high, read_end}
        os.close(write_end)
        os.read(high, 1)
        assert readable([high], 1) == {high}  # the other end closed: readable, as EOF
    finally:
        for fd in (read_end, high):
            os.close(fd)
