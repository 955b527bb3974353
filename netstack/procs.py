"""Is a helper process from a pid file still ours and alive?

Rule: a pid file can outlive its process and the pid can be reused, so a
pid counts only when /proc/PID/stat names the expected program (up to the
first dot: Debian's pasta runs as ``passt.avx2``) and it is not a zombie.
"""

from __future__ import annotations

from pathlib import Path


def is_live(pid: int, *names: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, _, rest = stat.partition(" (")[2].rpartition(") ")
    return comm.split(".")[0] in names and rest[:1] != "Z"
