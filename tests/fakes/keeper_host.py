"""A keeper whose "container" is a plain host process (maintained fake).

``host_launcher`` is a lifecycle.Launcher: it writes ``keeper.spec`` (the
keeper spec plus the argv, marshalled) into the container's runtime dir and returns the
argv of this module, which serves a real Keeper over a ``HostWorkload``.
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


def host_launcher(store, c):
    from rootless.containers.lifecycle import keeper_env
    spec = {"rundir": str(store.run_dir(c.id)), "log_path": str(store.log_path(c.id)),
            **{k: c.config[k] for k in ("restart", "log_max_size", "log_max_files",
                                        "stop_timeout") if k in c.config}}
    with open(os.path.join(spec["rundir"], "keeper.spec"), "wb") as f:
        marshal.dump({"spec": spec, "argv": c.command}, f)
    env = keeper_env()
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    return [sys.executable, "-S", "-m", "tests.fakes.keeper_host", spec["rundir"]], env


def main() -> int:
    with open(os.path.join(sys.argv[1], "keeper.spec"), "rb") as f:
        cfg = marshal.load(f)
    keeper = Keeper(cfg["spec"], HostWorkload(cfg["argv"]))
    return keeper.serve(fd_ready(int(os.environ["PRUN_READY_FD"])))


if __name__ == "__main__":
    sys.exit(main())
