"""Who is at the other end of a loopback TCP connection (Linux `/proc`).

The input feed serves a private match over loopback HTTP. Its path is
random, but FFmpeg's argv (and so the URL) is readable by every account on
the machine in `/proc/PID/cmdline`; so the feed also asks the kernel which
process holds the connecting socket, and serves only this process and its
own children (ffprobe and FFmpeg). Another account's process cannot be one
of them, whatever it knows of the URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it (little-endian)


def _socket_inode(client_port: int, server_port: int) -> str | None:
    """The inode of the client's end of 127.0.0.1:client_port → :server_port."""
    local = f"{LOOPBACK_HEX}:{client_port:04X}"
    remote = f"{LOOPBACK_HEX}:{server_port:04X}"
    try:
        # /proc/self/net, not /proc/net: the unit's ProcSubset=pid hides the latter.
        with open("/proc/self/net/tcp", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 9 and fields[1] == local and fields[2] == remote:
                    return fields[9]
    except OSError:
        return None
    return None


def _children(parent: int) -> Iterator[int]:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rfind(")") + 2 :].split()  # (the name may hold spaces)
        if len(fields) > 1 and fields[1] == str(parent):
            yield int(name)


def _holds(pid: int, target: str) -> bool:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for fd in names:
        try:
            if os.readlink(f"{folder}/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def is_own_process(client_port: int, server_port: int) -> bool:
    """True when this process or one of its children holds the client end of
    the connection; False for anyone else, and whenever it cannot be told."""
    inode = _socket_inode(client_port, server_port)
    if inode is None or inode == "0":
        return False
    target = f"socket:[{inode}]"
    me = os.getpid()
    return _holds(me, target) or any(_holds(pid, target) for pid in _children(me))
