"""`prun run` flags + image config → the container spec the helper applies (pure).

Rules:
- ``RunRequest`` holds the flags as the user wrote them; ``build`` checks
  and resolves them (volumes, env files, capabilities, seccomp) and returns
  the wire spec: a dict of plain data (see rootless._helper for its use).
- Errors name the flag as written: ``mount -v ./nosuch:/data: ./nosuch: no
  such file or directory``.
- Image semantics are docker's: ``--entrypoint`` replaces ENTRYPOINT and
  drops the image's CMD; command arguments replace CMD; ENV is merged with
  PATH defaulted; WORKDIR and USER apply unless ``-w``/``-u`` are given.
- Host state this needs (cwd, host environment, volume dirs, existence of
  bind sources) comes in through ``BuildContext``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rootless.errors import NotFoundError, UsageError
from rootless.idmap import IdMaps
from rootless.ns import caps as capsmod
from rootless.ns import plan

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TMPFS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8}
TMPFS_CLEAR = {"rw": 1, "suid": 2, "dev": 4, "exec": 8}


@dataclass(repr=False, eq=False)
class RunRequest:
    image: str
    command: list[str] = field(default_factory=list)
    rootfs: bool = False                 # --rootfs: IMAGE is a directory
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    env_file: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    group_add: list[str] = field(default_factory=list)
    hostname: str | None = None
    name: str | None = None
    rm: bool = False
    interactive: bool = False
    tty: bool = False
    volumes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    read_only: bool = False
    read_only_tmpfs: bool = True
    network: str = "slirp4netns"
    publish: list[str] = field(default_factory=list)       # -p (netstack.ports grammar)
    publish_all: bool = False                              # -P
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_option: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    no_hosts: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    init: bool = False
    userns: str = ""
    uidmap: list[str] = field(default_factory=list)
    gidmap: list[str] = field(default_factory=list)
    pull: str = "missing"                # never | missing | always (podman's --pull)
    quiet: bool = False
    detach: bool = False                 # -d: rootless.containers.detach
    restart: str = "no"
    log_opt: list[str] = field(default_factory=list)
    stop_timeout: float = 10.0
    cgroup: object = None                # rootless.cgroups.manager.CgroupRequest (None: defaults)


@dataclass(repr=False, eq=False)
class BuildContext:
    cid: str
    cwd: Path
    host_env: Mapping[str, str]
    volumes_dir: Path                    # named volumes: <dir>/<name>/_data
    rootfs_mountpoint: Path
    etc_files: dict[str, str]            # /etc/hosts -> host file with its content
    host_uid: int = 0
    host_gid: int = 0
    init_binary: str = "/usr/bin/catatonit"


def image_process(config: Mapping, req: RunRequest) -> tuple[list[str], str, str]:
    """(args, workdir, user) from the image config and the flags."""
    entry = list(config.get("Entrypoint") or [])
    cmd = list(config.get("Cmd") or [])
    if req.entrypoint is not None:
        if req.entrypoint.startswith("["):
            try:
                entry = [str(x) for x in json.loads(req.entrypoint)]
            except ValueError as exc:
                raise UsageError(f"parse --entrypoint {req.entrypoint}: {exc}",
                                 hint='a JSON array, e.g. --entrypoint \'["/bin/sh","-c"]\'')
        else:
            entry = [req.entrypoint] if req.entrypoint else []
        cmd = []
    if req.command:
        cmd = list(req.command)
    args = entry + cmd
    if not args:
        raise UsageError(f"run {req.image}: no command or entrypoint provided, and no CMD or "
                         "ENTRYPOINT from the image", hint=f"e.g. prun run {req.image} sh")
    workdir = req.workdir or config.get("WorkingDir") or "/"
    if not workdir.startswith("/"):
        raise UsageError(f"use -w {workdir}: the working directory must be an absolute path")
    user = req.user if req.user is not None else (config.get("User") or "")
    return args, workdir, user


def parse_env_file(text: str, path: str, host_env: Mapping[str, str]) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out += _env_item(line, host_env)
    return out


def _env_item(item: str, host_env: Mapping[str, str]) -> list[str]:
    key, eq, _ = item.partition("=")
    if not key:
        raise UsageError(f"use -e {item}: the variable name is empty")
    if eq:
        return [item]
    return [f"{key}={host_env[key]}"] if key in host_env else []


def merge_env(image_env: list[str], extra: list[str]) -> list[str]:
    env: dict[str, str] = {}
    for item in [*image_env, *extra]:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in env.items()]


def _bind_source(src: str, flag: str, ctx: BuildContext) -> str:
    path = (ctx.cwd / src) if not src.startswith("/") else Path(src)
    path = Path(os.path.abspath(path))
    if not path.exists():
        raise NotFoundError(f"mount {flag}: {src}: no such file or directory",
                            hint="create it first; prun does not create bind-mount sources")
    return str(path)


def _named_volume(name: str, ctx: BuildContext) -> str:
    if "/" in name or name in (".", ".."):
        raise UsageError(f"use volume {name}: a volume name may not contain '/'")
    data = ctx.volumes_dir / name / "_data"
    data.mkdir(parents=True, exist_ok=True)
    return str(data)


def parse_volume(spec: str, ctx: BuildContext) -> plan.Volume:
    flag = f"-v {spec}"
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, opts = f"{ctx.cid[:12]}-{parts[0].strip('/').replace('/', '-')}", parts[0], ""
    elif len(parts) in (2, 3):
        src, dst = parts[0], parts[1]
        opts = parts[2] if len(parts) == 3 else ""
    else:
        raise UsageError(f"parse {flag}: expected [HOST-DIR|VOLUME:]CONTAINER-DIR[:OPTIONS]")
    if not dst.startswith("/"):
        raise UsageError(f"parse {flag}: the container path {dst} must be absolute")
    readonly = False
    for opt in filter(None, opts.split(",")):
        if opt in ("ro", "rw"):
            readonly = opt == "ro"
        elif opt not in ("z", "Z", "bind", "rbind", "private", "rprivate"):
            raise UsageError(f"parse {flag}: unknown option {opt}",
                             hint="options: ro, rw (z/Z are accepted and ignored)")
    source = (_bind_source(src, flag, ctx) if src.startswith((".", "/"))
              else _named_volume(src, ctx))
    return plan.Volume(source, dst, "bind", readonly, origin=flag)


def parse_tmpfs(spec: str, flag: str | None = None) -> plan.Volume:
    flag = flag or f"--tmpfs {spec}"
    path, _, opts = spec.partition(":")
    if not path.startswith("/"):
        raise UsageError(f"parse {flag}: the container path {path} must be absolute")
    flags = TMPFS_FLAGS["nosuid"] | TMPFS_FLAGS["nodev"] | TMPFS_FLAGS["noexec"]
    data = []
    for opt in filter(None, opts.split(",")):
        if opt in TMPFS_FLAGS:
            flags |= TMPFS_FLAGS[opt]
        elif opt in TMPFS_CLEAR:
            flags &= ~TMPFS_CLEAR[opt]
        elif opt.split("=")[0] in ("size", "mode", "nr_inodes", "uid", "gid"):
            data.append(opt)
        elif opt not in ("tmpcopyup", "notmpcopyup"):
            raise UsageError(f"parse {flag}: unknown option {opt}")
    return plan.Volume("tmpfs", path, "tmpfs", bool(flags & 1), ",".join(data), flags,
                       origin=flag)


def parse_mount(spec: str, ctx: BuildContext) -> plan.Volume:
    flag = f"--mount {spec}"
    kv: dict[str, str] = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        kv[k.strip()] = v if eq else "true"
    kind = kv.pop("type", "volume")
    src = kv.pop("source", kv.pop("src", ""))
    dst = kv.pop("target", kv.pop("destination", kv.pop("dst", "")))
    ro = kv.pop("readonly", kv.pop("ro", "false")) in ("true", "1", "")
    if not dst.startswith("/"):
        raise UsageError(f"parse {flag}: target= must be an absolute container path")
    if kind == "tmpfs":
        opts = [f"size={kv.pop('tmpfs-size')}"] if "tmpfs-size" in kv else []
        opts += [f"mode={kv.pop('tmpfs-mode')}"] if "tmpfs-mode" in kv else []
        vol = parse_tmpfs(f"{dst}:{','.join(opts + (['ro'] if ro else []))}", flag)
    elif kind == "bind":
        kv.pop("bind-propagation", None)
        if not src:
            raise UsageError(f"parse {flag}: a bind mount needs source=")
        vol = plan.Volume(_bind_source(src, flag, ctx), dst, "bind", ro, origin=flag)
    elif kind == "volume":
        vol = plan.Volume(_named_volume(src or f"anon-{ctx.cid[:12]}", ctx), dst, "bind", ro,
                          origin=flag)
    else:
        raise UsageError(f"parse {flag}: unknown type {kind}", hint="types: bind, volume, tmpfs")
    if kv:
        raise UsageError(f"parse {flag}: unknown option {', '.join(sorted(kv))}")
    return vol


@dataclass(repr=False, eq=False)
class Security:
    seccomp: str = "default"        # default | unconfined | path
    no_new_privs: bool = True
    mask: list[str] = field(default_factory=list)
    unmask: list[str] = field(default_factory=list)


def parse_security(opts: list[str]) -> Security:
    sec = Security()
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "seccomp":
            sec.seccomp = value
        elif key in ("no-new-privileges", "no_new_privs"):
            sec.no_new_privs = value in ("", "true", "1")
        elif key == "mask":
            sec.mask += [p for p in value.split(":") if p]
        elif key == "unmask":
            sec.unmask += [p for p in value.split(":") if p]
        elif key not in ("label", "apparmor"):
            raise UsageError(f"use --security-opt {opt}: unknown option",
                             hint="seccomp=unconfined|FILE, no-new-privileges[=false], "
                                  "mask=PATHS, unmask=PATHS|ALL")
    return sec


def build(req: RunRequest, config: Mapping, rootfs: dict, maps: IdMaps,
          ctx: BuildContext) -> dict:
    """The wire spec for the helper (see the module rules)."""
    args, workdir, user = image_process(config, req)
    if req.userns == "keep-id" and req.user is None:
        user = f"{ctx.host_uid}:{ctx.host_gid}"
    extra_env: list[str] = []
    for path in req.env_file:
        try:
            text = (ctx.cwd / path).read_text()
        except OSError as exc:
            raise NotFoundError(f"read --env-file {path}: {exc.strerror}") from exc
        extra_env += parse_env_file(text, path, ctx.host_env)
    hostname = req.hostname or ctx.cid[:12]
    defaults = [f"HOSTNAME={hostname}", "container=prun"]
    if req.tty:
        defaults.append("TERM=xterm")
    for item in req.env:
        extra_env += _env_item(item, ctx.host_env)
    env = merge_env(list(config.get("Env") or []), defaults + extra_env)
    if req.init:
        args = [plan.INIT_PATH, "--", *args]
    volumes = [parse_volume(v, ctx) for v in req.volumes]
    volumes += [parse_mount(m, ctx) for m in req.mounts]
    volumes += [parse_tmpfs(t) for t in req.tmpfs]
    sec = parse_security(req.security_opt)
    keep = capsmod.plan_caps(req.cap_add, req.cap_drop, req.privileged)
    names = [capsmod.NAMES[c] for c in keep if c < len(capsmod.NAMES)]
    seccomp = _seccomp(sec.seccomp, names, ctx, req.privileged)
    masked = () if req.privileged or "ALL" in sec.unmask else tuple(
        p for p in plan.MASKED if p not in sec.unmask) + tuple(sec.mask)
    readonly = () if req.privileged or "ALL" in sec.unmask else tuple(
        p for p in plan.READONLY if p not in sec.unmask)
    inputs = plan.MountInputs(
        volumes=volumes, etc_files=ctx.etc_files, read_only=req.read_only,
        read_only_tmpfs=req.read_only_tmpfs, network=req.network,
        tty_gid=5 if maps.maps_gid(5) else None, masked=masked, readonly_paths=readonly,
        init_binary=ctx.init_binary if req.init else None, workdir=workdir)
    origins = {v.target: v.origin for v in volumes}
    return {
        "id": ctx.cid, "hostname": hostname, "network": req.network,
        "single_map": maps.single, "rootfs": rootfs, "origins": origins,
        "nested_maps": None if maps.nested_uid is None else (maps.nested_uid, maps.nested_gid),
        "mounts": plan.plan_mounts(inputs),
        "process": {"args": args, "env": env, "cwd": workdir, "user": user,
                    "group_add": list(req.group_add), "tty": req.tty,
                    "stdin": req.interactive or req.tty, "caps": keep,
                    "no_new_privs": sec.no_new_privs and not req.privileged,
                    "seccomp": seccomp},
    }


def _seccomp(choice: str, caps: list[str], ctx: BuildContext, privileged: bool):
    from rootless.ns import seccomp

    if privileged or choice == "unconfined":
        return None
    if choice == "default":
        return seccomp.default_profile(caps)
    try:
        text = (ctx.cwd / choice).read_text()
    except OSError as exc:
        raise NotFoundError(f"read --security-opt seccomp={choice}: {exc.strerror}") from exc
    return seccomp.parse_json(text, caps, choice)
