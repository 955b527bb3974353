"""`prun exec`: ``python -S -P -m rootless.containers.nsexec FD`` joins a
running container and runs a command there.

A fresh single-threaded interpreter (setns(CLONE_NEWUSER) refuses threaded
processes). FD carries the marshalled request: the container init's host
pid, the container's process spec (caps, seccomp, no_new_privs, env) and
the exec flags (args, env, user, cwd).

Rules (comments say why an order matters):
- Everything needed from the host (modules, libseccomp) is loaded and every
  /proc/PID/ns/* file opened before the first setns: afterwards the host's
  files are out of reach.
- The container init's root directory is opened after joining the user
  namespace (the permission check needs it) and before the mount namespace,
  and chroot()ed into at the end, so the command sees the init's root.
- The user namespace is joined first (it grants the capabilities the other
  setns calls need), then mount, uts, ipc, net, cgroup and pid; a namespace
  the container shares with us (``--network host``) is skipped.
- setns(pid) only affects children, so we fork: the child is in the
  container's PID namespace, has PR_SET_PDEATHSIG, and becomes the command
  with the container's capability set, seccomp filter, no_new_privs and the
  requested user; the parent forwards signals and exits with its code.
- Errors go to stderr as ``prun: error: …``; exit 126/127 as for run.
"""

from __future__ import annotations

import marshal
import os
import signal
import sys

from rootless.ns import sys as nsys

NAMESPACES = (("user", nsys.CLONE_NEWUSER), ("mnt", nsys.CLONE_NEWNS),
              ("uts", nsys.CLONE_NEWUTS), ("ipc", nsys.CLONE_NEWIPC),
              ("net", nsys.CLONE_NEWNET), ("cgroup", nsys.CLONE_NEWCGROUP),
              ("pid", nsys.CLONE_NEWPID))
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH)


def fail(message: str, code: int = 125) -> None:
    os.write(2, f"prun: error: {message}\n".encode())
    os._exit(code)


def join(pid: int) -> int:
    """Join the namespaces of ``pid``; return an fd of its root directory."""
    fds = []
    for name, flag in NAMESPACES:
        theirs = f"/proc/{pid}/ns/{name}"
        if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
            fds.append((name, os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), flag))
    root = -1
    for name, fd, flag in fds:
        if name == "mnt":
            # Only as root of the container's user namespace may we open its
            # init's root, and only before we leave the host's mounts.
            root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            nsys.setns(fd, flag)
        except OSError as exc:
            fail(f"join the container's {name} namespace: {exc.strerror or exc}")
        os.close(fd)
    return root


def become(req: dict, sfilter) -> None:
    """In the child: switch to the container's identity and exec."""
    from rootless.ns import privdrop, users

    proc = req["process"]
    step = "look up the user " + (req["user"] or "root")
    try:
        ident = users.resolve(req["user"], proc["group_add"] if not req["user_given"] else [])
        step = "change to the working directory " + req["cwd"]
        os.chdir(req["cwd"])
        privdrop.drop(proc, req["user"], ident, req["single_map"], sfilter, nsys)
    except (users.UserError, privdrop.DropFailed) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{step}: {exc.strerror or exc}")
    env = dict(e.split("=", 1) for e in proc["env"] if "=" in e)
    env.setdefault("HOME", ident.home)
    env.update(dict(e.split("=", 1) for e in req["env"]))
    args = req["args"]
    try:
        os.execvpe(args[0], args, env)
    except OSError as exc:
        if exc.errno == 2:
            fail(f"exec {args[0]}: executable file not found in $PATH" if "/" not in args[0]
                 else f"exec {args[0]}: no such file or directory", 127)
        fail(f"exec {args[0]}: {exc.strerror}", 126)


def main() -> None:
    fd = int(sys.argv[1])
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    os.close(fd)
    req = marshal.loads(data)
    sfilter = None
    if req["process"]["seccomp"] is not None:
        from rootless.ns.seccomp import Filter
        sfilter = Filter(req["process"]["seccomp"])
    from rootless.ns import privdrop, users  # noqa: F401 -- loaded while host files are reachable
    nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
    root = join(req["pid"])
    # The container's root as its init sees it (after its pivot_root).
    os.fchdir(root)
    os.chroot(".")
    os.close(root)
    child = os.fork()
    if child == 0:
        nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
        become(req, sfilter)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: os.kill(child, s))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
