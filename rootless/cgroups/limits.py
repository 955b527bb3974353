"""Resource-limit flags → validated ``Limits`` → cgroup v2 file values (pure).

Rules:
- Flags are parsed the way podman parses them: sizes take b/k/m/g (and kb,
  mb, gb; powers of 1024), ``--memory-swap -1`` means unlimited swap,
  ``--pids-limit 0`` or ``-1`` means no limit, ``--cpus`` and
  ``--cpu-quota`` are mutually exclusive, ``--memory-swap`` and
  ``--memory-reservation`` are checked against ``--memory``.
- A bad value is a ``UsageError`` naming the flag and the value as written.
- Every limit remembers the flag it came from, so when the host cannot
  enforce it (``required``) the error names the flag and the controller.
- Conversions follow crun/runc for cgroup v2: ``--cpu-shares`` → cpu.weight
  ``1 + (shares-2)*9999/262142``, ``--blkio-weight`` (10–1000) → io.weight
  ``1 + (w-10)*9999/990``; ``--memory-swap`` is memory+swap, so
  memory.swap.max is the difference (with ``--memory`` alone, swap equal to
  memory is allowed, like docker and podman).
- Device limits (``--device-read-bps /dev/sda:1mb``) need the device's
  number; ``parse_limits`` takes the stat function as a parameter.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rootless.errors import UsageError

DEFAULT_PERIOD = 100_000          # µs, like the kernel's and podman's default
MIN_MEMORY = 6 * 1024 * 1024      # podman refuses less: the container cannot start
MAX_SHARES = 262_144
UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
         "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}

@dataclass(frozen=True)
class DeviceLimit:
    """One ``--device-*`` value: the device as written and its number."""

    flag: str          # e.g. "--device-read-bps"
    written: str       # e.g. "/dev/sda:1mb"
    major: int
    minor: int
    value: int


@dataclass(frozen=True)
class Limits:
    """What the user asked for; ``None`` = not asked. ``flags`` maps each set
    field to the flag spelling the user used (for error messages)."""

    memory: int | None = None
    memory_swap: int | None = None          # memory + swap; -1 = unlimited
    memory_reservation: int | None = None
    cpu_quota: int | None = None            # µs per period
    cpu_period: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    blkio_weight: int | None = None
    devices: tuple[DeviceLimit, ...] = ()
    flags: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.flags)

    def required(self) -> dict[str, list[str]]:
        """controller -> the flags (as the user wrote them) that need it."""
        need: dict[str, list[str]] = {}
        for name, flag in self.flags.items():
            need.setdefault(CONTROLLER_OF[name], []).append(flag)
        for dev in self.devices:
            need.setdefault("io", []).append(f"{dev.flag} {dev.written}")
        return need


CONTROLLER_OF = {"memory": "memory", "memory_swap": "memory", "memory_reservation": "memory",
                 "cpu_quota": "cpu", "cpu_period": "cpu", "cpu_shares": "cpu",
                 "cpuset_cpus": "cpuset", "pids_limit": "pids", "blkio_weight": "io"}

DEVICE_FLAGS = {"--device-read-bps": ("rbps", True), "--device-write-bps": ("wbps", True),
                "--device-read-iops": ("riops", False), "--device-write-iops": ("wiops", False),
                "--blkio-weight-device": ("weight", False)}


def parse_size(flag: str, text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in UNITS:
        raise UsageError(f"parse {flag} {text!r}: not a size",
                         hint="use a number with an optional unit b, k, m or g, e.g. 256m")
    return int(float(m.group(1)) * UNITS[unit])


def _int(flag: str, text: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UsageError(f"parse {flag} {text!r}: not an integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UsageError(f"parse {flag} {text!r}: must be between {lo} and {hi}")
    return value


def parse_cpuset(flag: str, text: str) -> str:
    """Validate a cpu list such as ``0-3,5``; returns it normalised."""
    parts = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"parse {flag} {text!r}: not a CPU list",
                             hint="use CPU numbers and ranges, e.g. 0-3,5")
        parts.append(part)
    return ",".join(parts)


def cpuset_members(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def device_number(path: str) -> tuple[int, int]:
    """The real stat: (major, minor) of a block device."""
    st = os.stat(path)
    if not stat.S_ISBLK(st.st_mode):
        raise UsageError(f"use device {path}: not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def parse_device(flag: str, text: str, devnum: Callable[[str], tuple[int, int]]) -> DeviceLimit:
    path, sep, value = text.rpartition(":")
    if not sep or not path.startswith("/"):
        raise UsageError(f"parse {flag} {text!r}: expected DEVICE:VALUE",
                         hint=f"e.g. {flag} /dev/sda:{'10mb' if DEVICE_FLAGS[flag][1] else '100'}")
    _, is_size = DEVICE_FLAGS[flag]
    if flag == "--blkio-weight-device":
        number = _int(flag, value, 10, 1000)
    else:
        number = parse_size(flag, value) if is_size else _int(flag, value, 1)
    try:
        major, minor = devnum(path)
    except OSError as exc:
        raise UsageError(f"use {flag} {text!r}: {path}: {exc.strerror or exc}") from exc
    return DeviceLimit(flag, text, major, minor, number)


def parse_limits(opts: Mapping[str, object],
                 devnum: Callable[[str], tuple[int, int]] = device_number) -> Limits:
    """Flag values (click's keys: ``memory``, ``cpus``, ``device_read_bps``…;
    ``None``/empty = not given) → ``Limits``; raises ``UsageError``."""
    v: dict[str, object] = {}
    flags: dict[str, str] = {}

    def given(key: str) -> str | None:
        value = opts.get(key)
        return None if value in (None, "", ()) else str(value)

    if (text := given("memory")) is not None:
        v["memory"] = parse_size("--memory", text)
        flags["memory"] = f"--memory {text}"
        if v["memory"] < MIN_MEMORY:
            raise UsageError(f"parse --memory {text!r}: the minimum is 6m",
                             hint="a container cannot start with less than 6 MiB")
    if (text := given("memory_swap")) is not None:
        v["memory_swap"] = -1 if text.strip() == "-1" else parse_size("--memory-swap", text)
        flags["memory_swap"] = f"--memory-swap {text}"
        if "memory" not in v:
            raise UsageError(f"use --memory-swap {text}: it needs --memory",
                             hint="--memory-swap is memory plus swap, e.g. --memory 256m "
                                  "--memory-swap 512m")
        if v["memory_swap"] != -1 and v["memory_swap"] < v["memory"]:
            raise UsageError(f"use --memory-swap {text}: it is less than --memory",
                             hint="--memory-swap is memory plus swap; -1 means unlimited swap")
    if (text := given("memory_reservation")) is not None:
        v["memory_reservation"] = parse_size("--memory-reservation", text)
        flags["memory_reservation"] = f"--memory-reservation {text}"
        if "memory" in v and v["memory_reservation"] > v["memory"]:
            raise UsageError(f"use --memory-reservation {text}: it is more than --memory")
    cpus = given("cpus")
    quota = given("cpu_quota")
    if cpus is not None and quota is not None:
        raise UsageError(f"use --cpus {cpus} with --cpu-quota {quota}: they set the same limit",
                         hint="give only one of them")
    if (text := given("cpu_period")) is not None:
        v["cpu_period"] = _int("--cpu-period", text, 1000, 1_000_000)
        flags["cpu_period"] = f"--cpu-period {text}"
    if cpus is not None:
        try:
            count = float(cpus)
        except ValueError:
            raise UsageError(f"parse --cpus {cpus!r}: not a number") from None
        if count <= 0:
            raise UsageError(f"parse --cpus {cpus!r}: must be more than 0")
        period = v.get("cpu_period") or DEFAULT_PERIOD
        v["cpu_quota"] = max(1000, round(count * period))
        flags["cpu_quota"] = f"--cpus {cpus}"
    if quota is not None:
        value = _int("--cpu-quota", quota)
        if value not in (-1, 0) and value < 1000:
            raise UsageError(f"parse --cpu-quota {quota!r}: the minimum is 1000 (µs)")
        if value > 0:  # -1 and 0 mean "no quota": nothing to enforce
            v["cpu_quota"] = value
            flags["cpu_quota"] = f"--cpu-quota {quota}"
    if (text := given("cpu_shares")) is not None:
        v["cpu_shares"] = _int("--cpu-shares", text, 2, MAX_SHARES)
        flags["cpu_shares"] = f"--cpu-shares {text}"
    if (text := given("cpuset_cpus")) is not None:
        v["cpuset_cpus"] = parse_cpuset("--cpuset-cpus", text)
        flags["cpuset_cpus"] = f"--cpuset-cpus {text}"
    if (text := given("pids_limit")) is not None:
        value = _int("--pids-limit", text, -1)
        if value > 0:  # -1 and 0 mean "no limit": nothing to enforce
            v["pids_limit"] = value
            flags["pids_limit"] = f"--pids-limit {text}"
    if (text := given("blkio_weight")) is not None:
        v["blkio_weight"] = _int("--blkio-weight", text, 10, 1000)
        flags["blkio_weight"] = f"--blkio-weight {text}"
    devices = []
    for flag in DEVICE_FLAGS:
        for text in opts.get(flag[2:].replace("-", "_")) or ():
            devices.append(parse_device(flag, str(text), devnum))
    return Limits(**v, devices=tuple(devices), flags=flags)


def shares_to_weight(shares: int) -> int:
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    return 1 + ((weight - 10) * 9999) // 990


def v2_files(limits: Limits) -> dict[str, str]:
    """cgroup v2 file name → value to write, in a safe order (memory.max before
    memory.swap.max, which the kernel checks against nothing but is clearer)."""
    files: dict[str, str] = {}
    if limits.memory is not None:
        files["memory.max"] = str(limits.memory)
        if limits.memory_swap is None:
            files["memory.swap.max"] = str(limits.memory)
        elif limits.memory_swap == -1:
            files["memory.swap.max"] = "max"
        else:
            files["memory.swap.max"] = str(limits.memory_swap - limits.memory)
    if limits.memory_reservation is not None:
        files["memory.low"] = str(limits.memory_reservation)
    if limits.cpu_quota is not None or limits.cpu_period is not None:
        quota = "max" if limits.cpu_quota is None else str(limits.cpu_quota)
        files["cpu.max"] = f"{quota} {limits.cpu_period or DEFAULT_PERIOD}"
    if limits.cpu_shares is not None:
        files["cpu.weight"] = str(shares_to_weight(limits.cpu_shares))
    if limits.cpuset_cpus is not None:
        files["cpuset.cpus"] = limits.cpuset_cpus
    if limits.pids_limit is not None:
        files["pids.max"] = str(limits.pids_limit)
    weights = []
    if limits.blkio_weight is not None:
        weights.append(f"default {blkio_to_io_weight(limits.blkio_weight)}")
    io_max: dict[tuple[int, int], list[str]] = {}
    for dev in limits.devices:
        key, _ = DEVICE_FLAGS[dev.flag]
        if key == "weight":
            weights.append(f"{dev.major}:{dev.minor} {blkio_to_io_weight(dev.value)}")
        else:
            io_max.setdefault((dev.major, dev.minor), []).append(f"{key}={dev.value}")
    if weights:
        # io.weight takes one line per write.
        files["io.weight"] = "\n".join(weights)
    if io_max:
        files["io.max"] = "\n".join(f"{ma}:{mi} {' '.join(kv)}" for (ma, mi), kv in io_max.items())
    return files
