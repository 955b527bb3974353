"""The namespace helper: ``python -S -P -m rootless._helper FD``.

A fresh, single-threaded interpreter (unshare(CLONE_NEWUSER) refuses
threaded processes, so the supervisor is never forked for this). FD is its
end of a SOCK_SEQPACKET socketpair speaking rootless.protocol.

Processes and order (comments say why an order matters):
1. At start, before the spec arrives, fork the FUSE server F: it imports
   the union fs (the slowest import of a run) while the supervisor is still
   parsing flags and this process builds namespaces; it joins them later.
2. unshare(USER); the supervisor writes the id maps (newuidmap runs outside
   the namespace); only then setresuid(0) maps to a real id.
3. unshare(NS|UTS|IPC|CGROUP[|NET]) as root of the new user namespace, so
   it owns them; make / rprivate so nothing propagates back to the host.
4. F setns()es into our user+mount namespaces and mounts the union rootfs
   (the FUSE server must run inside the user namespace: the uids it reports
   are read in its namespace).
5. unshare(PID) and fork the container init C: PID 1, own mount namespace
   copy (pivot_root there does not move F's view), mounts, pivot_root. C
   stops before exec until the supervisor's hooks (cgroup, network) ran.
6. Wait for C; stop F; report the exit code.
Only this process reads the socket; C writes to it (Pty, Failed) only.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket
import sys

from rootless import protocol as P
from rootless.ns import sys as nsys
from rootless.timing import mark as timing


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


# ---- F: the FUSE server ----------------------------------------------------

def fuse_server(helper: int, go_r: int, ready_w: int) -> None:
    nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
    # serve() imports the fusepy adapter lazily; import it now, while the
    # helper is still waiting for the id maps, not on the critical path.
    import fusefs.fs
    import fusefs.ops  # noqa: F401
    from fusefs.server import FuseMountError, MountSpec, serve
    timing("fuse-imports")
    data = _read_all(go_r)
    os.close(go_r)
    if not data:
        os._exit(0)
    r = marshal.loads(data)
    try:
        for ns, flag in (("user", nsys.CLONE_NEWUSER), ("mnt", nsys.CLONE_NEWNS)):
            fd = os.open(f"/proc/{helper}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            nsys.setns(fd, flag)
            os.close(fd)
    except OSError as exc:
        os.write(ready_w, f"E join the container namespaces: {exc.strerror}\n".encode())
        os._exit(1)
    from pathlib import Path
    spec = MountSpec(lowerdirs=[Path(p) for p in r["lowerdirs"]],
                     upperdir=Path(r["upperdir"]) if r["upperdir"] else None,
                     workdir=Path(r["workdir"]) if r["workdir"] else None,
                     mountpoint=Path(r["mountpoint"]))
    try:
        serve(spec, ready_w)
    except FuseMountError:
        os._exit(1)
    os._exit(0)


# ---- C: the container init -------------------------------------------------

def _fail(sock: socket.socket, message: str, code: int = 125, hint: str | None = None) -> None:
    P.send(sock, P.Failed(message, hint, code))
    os._exit(code)


def container(sock: socket.socket, spec: dict, ready_w: int, go_r: int) -> None:
    # Everything this init needs from the host (modules, libseccomp) is
    # loaded before pivot_root makes the host's files unreachable.
    from rootless.ns import apply, caps, users
    from rootless.ns.seccomp import Filter

    proc = spec["process"]
    root = spec["rootfs"]["mountpoint"]
    step = "set up the container"
    try:
        nsys.unshare(nsys.CLONE_NEWNS)
        for op in spec["mounts"]:
            try:
                apply.apply_op(root, op)
            except OSError as exc:
                _fail(sock, f"{_describe(op, spec)}: {exc.strerror or exc}")
        nsys.sethostname(spec["hostname"])
        slave = None
        if proc["tty"]:
            step = "allocate a pty"
            master, slave = nsys.open_pty(os.path.join(root, "dev/pts/ptmx"))
            P.send(sock, P.Pty(), [master])
            os.close(master)
        step = "prepare the seccomp profile"
        sfilter = Filter(proc["seccomp"]) if proc["seccomp"] is not None else None
        step = "pivot_root into the rootfs"
        apply.pivot(root)
        step = "look up the user"
        ident = users.resolve(proc["user"], proc["group_add"])
    except users.UserError as exc:
        _fail(sock, str(exc))
    except OSError as exc:
        _fail(sock, f"{step}: {exc.strerror or exc}")
    timing("container-setup")
    os.write(ready_w, b"r")
    os.close(ready_w)
    if os.read(go_r, 1) != b"g":
        os._exit(125)
    env = list(proc["env"])
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={ident.home}")
    envd = dict(e.split("=", 1) for e in env)
    try:
        step = "change to the working directory " + proc["cwd"]
        os.chdir(proc["cwd"])
        if not proc["stdin"]:
            # Without -i the container reads EOF, as with docker/podman.
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if slave is not None:
            step = "attach the pty"
            os.setsid()
            nsys.set_controlling_tty(slave)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
        step = "drop capabilities"
        caps.drop_bounding(proc["caps"], nsys)
        if sfilter is not None:
            step = "load the seccomp profile"
            sfilter.load()
        step = "switch to user " + (proc["user"] or "root")
        if not spec["single_map"]:
            os.setgroups(ident.groups)
        os.setresgid(ident.gid, ident.gid, ident.gid)
        os.setresuid(ident.uid, ident.uid, ident.uid)
        step = "set capabilities"
        caps.set_process_caps(proc["caps"], ident.uid == 0, nsys)
        if proc["no_new_privs"]:
            nsys.prctl(nsys.PR_SET_NO_NEW_PRIVS, 1)
        nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as exc:
        hint = None
        if step.startswith("switch to user") and exc.errno == 22:
            hint = ("that id is not mapped into the container: add a range for you to "
                    "/etc/subuid and /etc/subgid, or see --userns/--uidmap")
        _fail(sock, f"{step}: {exc.strerror or exc}", hint=hint)
    timing("exec")
    args = proc["args"]
    try:
        os.execvpe(args[0], args, envd)
    except OSError as exc:
        name = args[0]
        if exc.errno == 2 and "/" not in name:
            _fail(sock, f"run {name}: executable file not found in $PATH", 127,
                  hint="check the command name, or the image's PATH")
        if exc.errno == 2:
            _fail(sock, f"run {name}: no such file or directory", 127)
        _fail(sock, f"run {name}: {exc.strerror}", 126,
              hint="the file must be an executable the container can run")


def _describe(op: tuple, spec: dict) -> str:
    """'mount /data (from -v ./data:/data)' for a failed mount operation."""
    kind = op[0]
    if kind in ("mount", "bind", "symlink"):
        where = op[2]
    elif kind == "dev":
        where = f"/dev/{op[1]}"
    elif kind == "sys":
        where = "/sys"
    elif kind == "rootfs_ro":
        where = "/ (read-only)"
    else:
        where = op[1]
    origin = spec["origins"].get(where)
    return f"mount {where} (from {origin})" if origin else f"mount {where}"


# ---- the helper itself -------------------------------------------------------

def run(sock: socket.socket) -> int:
    me = os.getpid()
    go_r, go_w = os.pipe()
    fready_r, fready_w = os.pipe()
    fpid = os.fork()
    if fpid == 0:
        sock.close()
        os.close(go_w)
        os.close(fready_r)
        fuse_server(me, go_r, fready_w)
    os.close(go_r)
    os.close(fready_w)
    spec = P.expect(sock, P.Spec).spec
    timing("helper-spec")
    nsys.unshare(nsys.CLONE_NEWUSER)
    # The kernel made us non-dumpable (new capabilities); F and the
    # single-id map writer need /proc/<us>/ to stay ours.
    nsys.prctl(4, 1)  # PR_SET_DUMPABLE
    P.send(sock, P.UsernsReady(me))
    P.expect(sock, P.MapsDone)
    timing("id-maps")
    # Maps are in place: setresuid(0) now names a real id.
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if not spec["single_map"]:
        os.setgroups([])
    flags = nsys.CLONE_NEWNS | nsys.CLONE_NEWUTS | nsys.CLONE_NEWIPC | nsys.CLONE_NEWCGROUP
    if spec["network"] != "host":
        flags |= nsys.CLONE_NEWNET
    nsys.unshare(flags)
    nsys.prctl(4, 1)
    # Nothing we mount may propagate to the host's mount namespace.
    nsys.mount(None, "/", None, nsys.MS_REC | nsys.MS_PRIVATE)
    if spec["network"] != "host":
        nsys.link_up("lo")
    P.send(sock, P.NamespacesReady(me))
    rootfs = spec["rootfs"]
    if rootfs["kind"] == "fuse":
        os.write(go_w, marshal.dumps(rootfs))
        os.close(go_w)
        answer = _read_all(fready_r)
        if answer != b"1":
            text = answer.decode(errors="replace")[2:].strip() or "the FUSE server exited"
            raise P.RemoteFailure(P.Failed(f"mount the image's union filesystem: {text}",
                                           "run `prun info` to check /dev/fuse", 125))
    else:
        os.close(go_w)
        os.waitpid(fpid, 0)
        fpid = 0
        nsys.mount(rootfs["dir"], rootfs["mountpoint"], None, nsys.MS_BIND | nsys.MS_REC)
    timing("rootfs-mount")
    if spec.get("detach"):
        from rootless.containers.helperkeeper import keep
        return keep(sock, spec, fpid, container)
    cready_r, cready_w = os.pipe()
    cgo_r, cgo_w = os.pipe()
    nsys.unshare(nsys.CLONE_NEWPID)
    cpid = os.fork()
    if cpid == 0:
        os.close(cready_r)
        os.close(cgo_w)
        try:
            container(sock, spec, cready_w, cgo_r)
        except BaseException as exc:  # the init must never return into the helper
            P.send(sock, P.Failed(f"set up the container: {exc}", None, 125))
        os._exit(125)
    os.close(cready_w)
    os.close(cgo_r)
    if os.read(cready_r, 1) == b"r":
        P.send(sock, P.Created(cpid))
        P.expect(sock, P.Go)
        os.write(cgo_w, b"g")
    os.close(cgo_w)
    _, status = os.waitpid(cpid, 0)
    timing("container-exited")
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    if fpid:
        # Every write already reached the upper dir (FUSE writes are
        # synchronous here); the mount dies with our mount namespace.
        os.kill(fpid, signal.SIGKILL)
        os.waitpid(fpid, 0)
    P.send(sock, P.Exited(code))
    return 0


def main() -> None:
    nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    try:
        sys.exit(run(sock))
    except P.RemoteFailure as exc:
        f = exc.failed
        P.send(sock, f)
        sys.exit(f.exit_code)
    except OSError as exc:
        P.send(sock, P.Failed(f"set up the container namespaces: {exc.strerror or exc}",
                              "run `prun info` to check user namespaces and /etc/subuid", 125))
        sys.exit(125)


if __name__ == "__main__":
    main()
