"""Id maps between container ids and host ids, in /proc/self/uid_map's shape."""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[int, int, int]  # (container start, host start, length)


def _map(value: int, ranges: tuple[Range, ...], forward: bool) -> int:
    for container, host, length in ranges:
        src, dst = (container, host) if forward else (host, container)
        if src <= value < src + length:
            return dst + value - src
    return -1


@dataclass(frozen=True)
class IdMap:
    uids: tuple[Range, ...]
    gids: tuple[Range, ...]

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """Host ids for container ids; -1 where the map has no entry."""
        return _map(uid, self.uids, True), _map(gid, self.gids, True)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """Container ids for host ids; -1 where the map has no entry."""
        return _map(uid, self.uids, False), _map(gid, self.gids, False)
