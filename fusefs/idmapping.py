"""Id mappings between the ids stored with files and the ids served
(fuse-overlayfs's ``-o uidmapping=``/``gidmapping=``).

Rules:
- A mapping is a list of ranges (stored, served, count), written
  ``STORED:SERVED:COUNT[:STORED:SERVED:COUNT…]`` (empty fields are skipped:
  podman 4 writes ``:0:1:1000:…``). containers-storage passes its
  ContainerID:HostID:Size triples to a mount program this way (files keep
  container ids; the kernel is told the ids of the mount's namespace), and
  prun passes a nested user namespace's lines (keep-id, ``--uidmap``), so
  the container sees the owners stored with the image.
- "Stored" is what the union keeps (the metadata xattr, else the owner on
  disk as the server sees it); "served" is what the kernel is told and what
  it passes in for chown and for a creating process.
- An id outside every range becomes the overflow id 65534, the way the
  kernel shows an id its namespace does not map.
"""

from __future__ import annotations

OVERFLOW = 65534


class IdMapping:
    __slots__ = ("ranges",)

    def __init__(self, ranges: list[tuple[int, int, int]]) -> None:
        self.ranges = tuple(ranges)

    @classmethod
    def parse(cls, text: str) -> IdMapping:
        """``STORED:SERVED:COUNT[:…]``; ValueError with the reason when malformed."""
        parts = [p for p in text.split(":") if p]
        if len(parts) % 3 or not parts:
            raise ValueError("expected STORED:SERVED:COUNT triples separated by ':'")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError("ids and counts must be numbers") from None
        ranges = [tuple(nums[i:i + 3]) for i in range(0, len(nums), 3)]
        if any(stored < 0 or served < 0 or count <= 0 for stored, served, count in ranges):
            raise ValueError("ids must be >= 0 and counts > 0")
        return cls(ranges)

    def served(self, stored: int) -> int:
        for start, served, count in self.ranges:
            if start <= stored < start + count:
                return served + stored - start
        return OVERFLOW

    def stored(self, served: int) -> int:
        for stored, start, count in self.ranges:
            if start <= served < start + count:
                return stored + served - start
        return OVERFLOW
