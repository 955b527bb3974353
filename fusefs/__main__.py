"""prun-overlayfs: fuse-overlayfs' command line over fusefs.server.serve.

    prun-overlayfs [-f] [-d] [-o OPT[,OPT...]]... MOUNTPOINT

Rules:
- ``lowerdir=A:B:C`` lists the TOP layer first (as overlayfs and
  fuse-overlayfs do); ``upperdir``/``workdir`` make the mount writable, and
  without them it is read-only. ``squash_to_uid``, ``squash_to_gid``,
  ``squash_to_root``, ``allow_other``, ``allow_root``, ``suid``, ``nosuid``,
  ``ro``, ``timeout`` (kernel cache seconds) and ``debug`` have
  fuse-overlayfs' meaning; ``threads=N`` sets prun's serving threads. Mount flags the kernel applies elsewhere or that
  change nothing here (rw, dev, exec, noatime, context=…, fsync=…, …) are
  accepted and ignored; ``uidmapping``/``gidmapping`` take
  fuse-overlayfs' STORED:SERVED:COUNT triples (fusefs.idmapping); any other
  option is ignored with a note on stderr, as fuse-overlayfs does.
- Without ``-f`` the command returns only once the mount answers requests
  (the server keeps running in a new session with stdio on /dev/null, so a
  caller reading our output, like containers-storage, sees EOF at once);
  with ``-f`` (or ``-d``) it serves in the foreground until unmounted. The
  daemon logs unexpected failures (with tracebacks) to syslog.
- Exit status: 0 once mounted (or after a foreground unmount), 1 with
  ``prun-overlayfs: error: …`` when the mount fails, 2 for a usage error.
- Only this module parses; it imports the FUSE machinery just before
  mounting, so ``--help`` and usage errors stay cheap.
"""

from __future__ import annotations

import os
import sys

from fusefs.idmapping import IdMapping

USAGE = "usage: prun-overlayfs [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,...] MOUNTPOINT"

# fuse-overlayfs options (and generic mount flags) that need nothing from us.
_IGNORED = {"rw", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
            "strictatime", "nodiratime", "lazytime", "sync", "async", "dirsync", "noacl",
            "static_nlink", "volatile", "xattr_permissions", "redirect_dir", "ino32_t",
            "fsync", "threaded", "context", "fscontext", "defcontext", "rootcontext",
            "max_idle_threads", "plugins", "fast_ino", "writeback", "default_permissions",
            "clone_fd"}
_PASSED = {"allow_other", "allow_root", "auto_unmount"}


class Usage(Exception):
    """A command-line error (exit 2)."""


def parse(argv: list[str]) -> tuple[object, bool, list[str]]:
    """(MountSpec, foreground, notes) for a prun-overlayfs command line."""
    from pathlib import Path

    from fusefs.server import DEFAULT_TIMEOUT, MountSpec

    opts: list[str] = []
    foreground = debug = False
    positional: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "-o":
            value = next(it, None)
            if value is None:
                raise Usage("-o needs a value")
            opts.append(value)
        elif arg.startswith("-o"):
            opts.append(arg[2:])
        elif arg == "-f":
            foreground = True
        elif arg == "-d":
            foreground = debug = True
        elif arg == "-s":
            continue   # single-threaded serving: our locks make it unnecessary
        elif arg.startswith("-") and arg != "-":
            raise Usage(f"unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) != 1:
        raise Usage("exactly one MOUNTPOINT is needed")
    kv: dict[str, str | None] = {}
    for group in opts:
        for item in _split_options(group):
            key, eq, value = item.partition("=")
            kv[key] = value if eq else None
    notes: list[str] = []
    lower = kv.pop("lowerdir", None)
    if not lower:
        raise Usage("-o lowerdir=… is required")
    upper, work = kv.pop("upperdir", None), kv.pop("workdir", None)
    if (upper is None) != (work is None):
        raise Usage("upperdir and workdir go together")
    squash_uid = _int(kv, "squash_to_uid")
    squash_gid = _int(kv, "squash_to_gid")
    if "squash_to_root" in kv:
        kv.pop("squash_to_root")
        squash_uid = squash_gid = 0
    mappings = {}
    for key in ("uidmapping", "gidmapping"):
        if key in kv:
            try:
                mappings[key] = list(IdMapping.parse(kv.pop(key) or "").ranges)
            except ValueError as exc:
                raise Usage(f"-o {key}: {exc}") from None
    try:
        timeout = float(kv.pop("timeout") or DEFAULT_TIMEOUT) if "timeout" in kv \
            else DEFAULT_TIMEOUT
    except ValueError:
        raise Usage("-o timeout=SECONDS: not a number") from None
    threads = _int(kv, "threads")
    read_only = "ro" in kv
    kv.pop("ro", None)
    debug = debug or "debug" in kv
    kv.pop("debug", None)
    suid = True if "suid" in kv else False if "nosuid" in kv else None
    kv.pop("suid", None)
    kv.pop("nosuid", None)
    extra = [key if value is None else f"{key}={value}" for key, value in kv.items()
             if key in _PASSED]
    allow_other = True if "allow_other" in kv else None
    notes += [f"unknown argument ignored: {key}" for key in kv
              if key not in _PASSED and key not in _IGNORED]
    lowers = [Path(os.path.abspath(p)) for p in lower.split(":") if p]
    spec = MountSpec(
        lowerdirs=lowers,
        upperdir=None if upper is None or read_only else Path(os.path.abspath(upper)),
        workdir=None if work is None or read_only else Path(os.path.abspath(work)),
        mountpoint=Path(os.path.abspath(positional[0])),
        squash_uid=squash_uid, squash_gid=squash_gid, suid=suid, timeout=timeout,
        uid_mapping=mappings.get("uidmapping", []), gid_mapping=mappings.get("gidmapping", []),
        debug=debug, allow_other=allow_other,
        **({} if threads is None else {"threads": max(1, threads)}),
        extra=[e for e in extra if e != "allow_other"])
    return spec, foreground, notes


def _split_options(group: str) -> list[str]:
    # Commas inside a value may be escaped as "\," (fuse-overlayfs allows it).
    out, cur, esc = [], [], False
    for ch in group:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [o for o in out if o]


def _int(kv: dict[str, str | None], key: str) -> int | None:
    value = kv.pop(key, None)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Usage(f"-o {key}={value}: not a number") from None


def _log_to_syslog() -> None:
    """A daemon's stderr is /dev/null: failures go to syslog when there is one."""
    if not os.path.exists("/dev/log"):
        return
    import logging
    import logging.handlers
    handler = logging.handlers.SysLogHandler(address="/dev/log")
    handler.setFormatter(logging.Formatter("prun-overlayfs[%(process)d]: %(message)s"))
    logging.getLogger("fusefs").addHandler(handler)


def _daemon(spec) -> int:
    """Fork a server in a new session; return once it reports the mount."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        _log_to_syslog()
        from fusefs.server import FuseMountError, serve
        try:
            serve(spec, w)
        except FuseMountError:
            os._exit(1)
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    answer = b"".join(chunks)
    if answer == b"1":
        return 0
    if answer.startswith(b"E "):
        print(f"prun-overlayfs: error: {answer[2:].decode(errors='replace').strip()}",
              file=sys.stderr)
    else:
        os.waitpid(pid, 0)
        print("prun-overlayfs: error: the server exited before mounting", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        print(__doc__.split("Rules:")[1])
        return 0
    if any(a in ("-V", "--version") for a in args):
        from rootless import __version__
        print(f"prun-overlayfs: version {__version__}")
        return 0
    try:
        spec, foreground, notes = parse(args)
    except Usage as exc:
        print(f"prun-overlayfs: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"prun-overlayfs: {note}", file=sys.stderr)
    if not foreground:
        return _daemon(spec)
    import logging

    from fusefs.server import FuseMountError, serve
    logging.basicConfig(level=logging.DEBUG if spec.debug else logging.WARNING,
                        format="prun-overlayfs: %(message)s")
    try:
        serve(spec)
    except FuseMountError as exc:
        print(f"prun-overlayfs: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
