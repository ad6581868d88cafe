"""`free_port`: ports for private stacks that the kernel does not hand out on its own and that
parallel test processes never share."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from irtmon.stack.private import _ephemeral_low, free_port
from tests.conftest import REPO


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if low >= 21_000:
        assert all(20_000 <= p < low for p in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_that_is_listened_on_is_not_given() -> None:
    taken = []
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.1", free_port()))
        s.listen()
        taken.append(s)
    try:
        busy = {s.getsockname()[1] for s in taken}
        assert busy.isdisjoint(free_port() for _ in range(50))
    finally:
        for s in taken:
            s.close()


def test_two_processes_drawing_at_once_never_share_a_port(tmp_path: Path) -> None:
    draw = "from irtmon.stack.private import free_port; print(*(free_port() for _ in range(100)))"
    procs = [
        subprocess.Popen([sys.executable, "-c", draw], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    first, second = (set(map(int, p.communicate(timeout=60)[0].split())) for p in procs)
    assert len(first) == len(second) == 100
    assert first.isdisjoint(second)
