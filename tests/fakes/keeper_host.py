"""A keeper whose "container" is a plain host process (maintained fake).

This module is the keeper process of the fake (kept as lean as the real
keeper, so benchmarks measure the keeper's own memory); keeper_spawn.py
starts it. It serves a real Keeper over a ``HostWorkload``.
Everything but the namespaces is the product's code: the control socket,
logs, restart policy, state file and the CLI-side refresh.
"""

from __future__ import annotations

import marshal
import os
import sys

from rootless.containers.keeper import Keeper, fd_ready


class HostWorkload:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.cleaned = 0

    def start(self) -> tuple[int, int, int]:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.execvp(self.argv[0], self.argv)
            finally:
                os._exit(127)
        os.close(out_w)
        os.close(err_w)
        return pid, out_r, err_r

    def cleanup(self) -> None:
        self.cleaned += 1


def main() -> int:
    with open(os.path.join(sys.argv[1], "keeper.spec"), "rb") as f:
        cfg = marshal.load(f)
    keeper = Keeper(cfg["spec"], HostWorkload(cfg["argv"]))
    return keeper.serve(fd_ready(int(os.environ["PRUN_READY_FD"])))


if __name__ == "__main__":
    sys.exit(main())
