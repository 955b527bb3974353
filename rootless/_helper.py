"""The namespace helper: ``python -S -P -m rootless._helper FD``.

A fresh, single-threaded interpreter (unshare(CLONE_NEWUSER) refuses
threaded processes, so the supervisor is never forked for this). FD is its
end of a SOCK_SEQPACKET socketpair speaking rootless.protocol.

Processes and order (comments say why an order matters):
1. At start, before the spec arrives, fork the FUSE server F and a map
   writer M, then unshare(USER). M, still outside, runs newuidmap/newgidmap
   for us (the first namespace's map does not depend on flags); F imports
   the union fs (the slowest import of a run); all while the supervisor is
   still parsing flags. F joins our namespaces later.
2. With the Spec and the maps in place, setresuid(0) maps to a real id.
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

``--network container:`` (argument ``join``, rootless.containers.netjoin):
no M and no unshare(USER) at start; with the Spec, the helper setns()es
into the user namespace of the target's keeper (``spec["join"]``; a
sibling user namespace could not join its network namespace), then goes on
from step 2, and in step 3 setns()es into the keeper's network namespace
instead of unsharing one (lo is up already). F joins us as usual.
"""

from __future__ import annotations

import marshal
import os
import resource
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

def write_maps(helper: int, unshared_r: int, maps_w: int) -> None:
    """M: give the helper's first user namespace its id maps (from outside).

    This map does not depend on the flags, so it is written while the
    supervisor is still starting; the result goes to ``maps_w``: b"" for
    success, else "message\0hint"."""
    from rootless import idmap
    from rootless.errors import PrunError

    if os.read(unshared_r, 1) != b"u":
        os._exit(0)
    os.close(unshared_r)
    try:
        idmap.apply(helper, idmap.for_user())
    except PrunError as exc:
        os.write(maps_w, f"{exc.message}\0{exc.hint or ''}".encode())
    timing("id-maps")
    os.close(maps_w)


def fuse_server(helper: int, go_r: int, ready_w: int, joined_w: int) -> None:
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
    os.close(joined_w)  # the helper may now move on to a nested user namespace
    from pathlib import Path
    # keep-id/--uidmap: the container lives in a nested namespace, so F serves
    # each stored id as the id of ours that the nested map shows as it: the
    # map's lines (inside, outside, count) are (stored, served, count).
    nested = r["nested_maps"] or ([], [])
    spec = MountSpec(lowerdirs=[Path(p) for p in r["lowerdirs"]],
                     upperdir=Path(r["upperdir"]) if r["upperdir"] else None,
                     workdir=Path(r["workdir"]) if r["workdir"] else None,
                     mountpoint=Path(r["mountpoint"]),
                     uid_mapping=[tuple(line) for line in nested[0]],
                     gid_mapping=[tuple(line) for line in nested[1]])
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
    from rootless.ns import apply, privdrop, users
    from rootless.ns.seccomp import Filter

    proc = spec["process"]
    root = spec["rootfs"]["mountpoint"]
    step = "set up the container"
    try:
        nsys.unshare(nsys.CLONE_NEWNS)
        # A mount of our own on the rootfs (the one made in the first user
        # namespace is locked here when we are in a nested one); from now on
        # the rootfs is ".", and bind sources are O_PATH fds: both opened
        # while we still have our host uid, which can reach them.
        nsys.mount(root, root, None, nsys.MS_BIND | nsys.MS_REC)
        os.chdir(root)
        root = "."
        ops = []
        for op in spec["mounts"]:
            if op[0] == "bind":
                try:
                    fd = os.open(op[1], os.O_PATH | os.O_CLOEXEC)
                except OSError as exc:
                    _fail(sock, f"{_describe(op, spec)}: {op[1]}: {exc.strerror}")
                op = (op[0], f"/proc/self/fd/{fd}", *op[2:])
            ops.append(op)
        if spec["nested_maps"]:
            # The helper kept its host uid in the nested namespace; files
            # this init creates (mount targets, /dev) need a mapped owner.
            step = "become root of the nested user namespace"
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            step = "set up the container"
        for op in ops:
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
        _fail(sock, str(exc), 126)
    except OSError as exc:
        _fail(sock, f"{step}: {exc.strerror or exc}")
    timing("container-setup")
    os.write(ready_w, b"r")
    os.close(ready_w)
    if os.read(go_r, 1) != b"g":
        os._exit(125)
    # podman raises the open-files soft limit to the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
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
        privdrop.drop(proc, proc["user"], ident, spec["single_map"], sfilter, nsys)
        nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
    except privdrop.DropFailed as exc:
        hint = ("that id is not mapped into the container: add a range for you to "
                "/etc/subuid and /etc/subgid, or see --userns/--uidmap") if exc.unmapped_id else None
        _fail(sock, str(exc), hint=hint)
    except OSError as exc:
        _fail(sock, f"{step}: {exc.strerror or exc}")
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

def _enter_nested(uid_lines: list, gid_lines: list) -> None:
    """Move into a user namespace nested in the first one (keep-id, --uidmap).

    Its maps are written by a child M that stays in the first namespace as
    root (only a process with CAP_SETUID there may map its ids)."""
    me = os.getpid()
    go_r, go_w = os.pipe()
    m = os.fork()
    if m == 0:
        os.close(go_w)
        code = 1
        if os.read(go_r, 1) == b"u":
            try:
                for name, lines in (("uid_map", uid_lines), ("gid_map", gid_lines)):
                    with open(f"/proc/{me}/{name}", "w") as f:
                        f.write("".join(f"{i} {o} {n}\n" for i, o, n in lines))
                code = 0
            except OSError as exc:
                os.write(2, f"prun: error: write the nested {name}: {exc.strerror}\n".encode())
        os._exit(code)
    os.close(go_r)
    nsys.unshare(nsys.CLONE_NEWUSER)
    nsys.prctl(4, 1)  # PR_SET_DUMPABLE: M writes our /proc files
    os.write(go_w, b"u")
    os.close(go_w)
    _, status = os.waitpid(m, 0)
    if status:
        raise OSError(1, "write the nested user namespace's id maps")
    # We keep our host uid (no setresuid): we have every capability in the
    # new namespace anyway, and slirp4netns (running as us on the host) can
    # then still open /proc/<us>/ns/*.


def _join_user(pid: int) -> int:
    """Enter the user namespace of ``pid``; return an fd of its network namespace.

    Both are opened first, while /proc/PID is still ours to read."""
    try:
        user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        nsys.setns(user, nsys.CLONE_NEWUSER)
    except OSError as exc:
        raise P.RemoteFailure(P.Failed(
            f"join the network of the other container: {exc.strerror or exc}",
            "it may have stopped: see `prun ps`", 125)) from None
    os.close(user)
    nsys.prctl(4, 1)  # PR_SET_DUMPABLE: F joins us through /proc/<us>/ns
    return net


def run(sock: socket.socket, join: bool = False) -> int:
    me = os.getpid()
    go_r, go_w = os.pipe()
    fready_r, fready_w = os.pipe()
    joined_r, joined_w = os.pipe()
    unshared_r, unshared_w = os.pipe()
    maps_r, maps_w = os.pipe()
    fpid = os.fork()
    if fpid == 0:
        nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
        sock.close()
        for fd in (go_w, fready_r, joined_r, unshared_w, maps_r, unshared_r, maps_w):
            os.close(fd)
        fuse_server(me, go_r, fready_w, joined_w)
    mpid = 0 if join else os.fork()
    if mpid == 0 and not join:
        nsys.prctl(nsys.PR_SET_PDEATHSIG, signal.SIGKILL)
        sock.close()
        for fd in (go_w, fready_r, joined_r, unshared_w, maps_r, go_r, fready_w, joined_w):
            os.close(fd)
        write_maps(me, unshared_r, maps_w)
        os._exit(0)
    for fd in (go_r, fready_w, joined_w, unshared_r, maps_w):
        os.close(fd)
    if join:
        os.close(unshared_w)
        os.close(maps_r)
        spec = P.expect(sock, P.Spec).spec
        timing("helper-spec")
        netns = _join_user(spec["join"])
        error = b""
    else:
        nsys.unshare(nsys.CLONE_NEWUSER)
        # The kernel made us non-dumpable (new capabilities); F and the
        # single-id map writer need /proc/<us>/ to stay ours.
        nsys.prctl(4, 1)  # PR_SET_DUMPABLE
        os.write(unshared_w, b"u")
        os.close(unshared_w)
        spec = P.expect(sock, P.Spec).spec
        timing("helper-spec")
        error = _read_all(maps_r)
        os.close(maps_r)
        os.waitpid(mpid, 0)
    if error:
        message, _, hint = error.decode(errors="replace").partition("\0")
        raise P.RemoteFailure(P.Failed(message, hint or None, 125))
    # Maps are in place: setresuid(0) now names a real id.
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if not spec["single_map"]:
        os.setgroups([])
    nsys.unshare(nsys.CLONE_NEWNS)
    nsys.prctl(4, 1)
    # Nothing we mount may propagate to the host's mount namespace.
    nsys.mount(None, "/", None, nsys.MS_REC | nsys.MS_PRIVATE)
    # The rootfs is mounted in this first user namespace (default map, we
    # are root): F starts mounting now, in parallel with the rest.
    rootfs = spec["rootfs"]
    if rootfs["kind"] == "fuse":
        os.write(go_w, marshal.dumps({**rootfs, "nested_maps": spec["nested_maps"]}))
        os.close(go_w)
    else:
        os.close(go_w)
        os.waitpid(fpid, 0)
        fpid = 0
        nsys.mount(rootfs["dir"], rootfs["mountpoint"], None, nsys.MS_BIND | nsys.MS_REC)
    if spec["nested_maps"]:
        # F joins our namespaces by /proc/<us>/ns: wait until it has.
        _read_all(joined_r)
        _enter_nested(*spec["nested_maps"])
    flags = nsys.CLONE_NEWUTS | nsys.CLONE_NEWIPC | nsys.CLONE_NEWCGROUP
    if spec["network"] != "host" and not join:
        flags |= nsys.CLONE_NEWNET
    nsys.unshare(flags)
    if join:
        # The target's network namespace; its lo is up, its tap0 configured.
        nsys.setns(netns, nsys.CLONE_NEWNET)
        os.close(netns)
    nsys.prctl(4, 1)
    if spec["network"] != "host" and not join:
        nsys.link_up("lo")
    P.send(sock, P.NamespacesReady(me))
    os.close(joined_r)
    if fpid:
        answer = _read_all(fready_r)
        if answer != b"1":
            text = answer.decode(errors="replace")[2:].strip() or "the FUSE server exited"
            raise P.RemoteFailure(P.Failed(f"mount the image's union filesystem: {text}",
                                           "run `prun info` to check /dev/fuse", 125))
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
    if fpid and not spec["nested_maps"]:
        # Every write already reached the upper dir (FUSE writes are
        # synchronous here); the mount dies with our mount namespace. From a
        # nested user namespace we may not signal F: its PDEATHSIG does it.
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
        code = run(sock, join=sys.argv[2:] == ["join"])
    except P.ProtocolError:
        # The supervisor hung up (e.g. `prun run` refused a flag after the
        # helper was pre-started): it reports its own error; nothing to add.
        sys.exit(0)
    except P.RemoteFailure as exc:
        P.send(sock, exc.failed)
        code = exc.failed.exit_code
    except OSError as exc:
        P.send(sock, P.Failed(f"set up the container namespaces: {exc.strerror or exc}",
                              "run `prun info` to check user namespaces and /etc/subuid", 125))
        code = 125
    # Our namespaces stay until the supervisor is done with them (a hook may
    # still be joining them): it closes the socket or kills us. (A keeper
    # of a detached container has closed its end already.)
    while sock.fileno() != -1 and sock.recv(64):
        continue
    sys.exit(code)


if __name__ == "__main__":
    main()
