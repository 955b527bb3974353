"""Transient systemd scopes on the user bus: the plan (pure) and the D-Bus calls.

Rules:
- This is the only module that imports jeepney, and only inside the
  functions that talk to the bus (start-up is a hot path). The calls are
  blocking (jeepney.io.blocking): the supervisor is synchronous, and trio's
  import alone would cost more than the whole call.
- ``scope_properties`` turns ``Limits`` into unit properties (``MemoryMax``,
  ``CPUQuotaPerSecUSec``, ``TasksMax``…); systemd writes the cgroup files
  itself, so a ``daemon-reload`` re-applies them instead of resetting them.
  ``Delegate=yes`` hands the scope's subtree to us; ``CollectMode=
  inactive-or-failed`` unloads it even after an OOM kill left it "failed".
- ``start_scope`` subscribes to ``JobRemoved`` BEFORE calling
  ``StartTransientUnit`` (a fast job can finish before the reply arrives)
  and returns only when the job is done: then the pid is in the scope.
- D-Bus errors become ``ContainerError``s naming the unit and the call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import contextmanager

from rootless.cgroups.limits import DEVICE_FLAGS, DEFAULT_PERIOD, Limits, cpuset_members, \
    blkio_to_io_weight, shares_to_weight
from rootless.errors import ContainerError

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
INFINITY = 2**64 - 1
TIMEOUT = 30.0
DEVICE_PROPERTY = {"rbps": "IOReadBandwidthMax", "wbps": "IOWriteBandwidthMax",
                   "riops": "IOReadIOPSMax", "wiops": "IOWriteIOPSMax",
                   "weight": "IODeviceWeight"}


def user_bus_address(env: Mapping[str, str]) -> str | None:
    """The user bus address from the environment (as sd-bus finds it)."""
    addr = env.get("DBUS_SESSION_BUS_ADDRESS")
    if addr:
        return addr
    runtime = env.get("XDG_RUNTIME_DIR")
    return f"unix:path={runtime}/bus" if runtime else None


def scope_name(container_id: str) -> str:
    return f"prun-{container_id}.scope"


def scope_properties(limits: Limits, pid: int, description: str,
                     slice_name: str | None = None) -> list[tuple[str, tuple[str, object]]]:
    """StartTransientUnit's ``a(sv)`` for a delegated scope holding ``pid``."""
    props: list[tuple[str, tuple[str, object]]] = [
        ("Description", ("s", description)),
        ("PIDs", ("au", [pid])),
        ("Delegate", ("b", True)),
        ("CollectMode", ("s", "inactive-or-failed")),
        # The container's own init decides what dies on OOM, like podman.
        ("OOMPolicy", ("s", "continue")),
    ]
    if slice_name:
        props.append(("Slice", ("s", slice_name)))
    return props + limit_properties(limits)


def limit_properties(limits: Limits) -> list[tuple[str, tuple[str, object]]]:
    """The unit properties that carry ``limits`` (also for SetUnitProperties)."""
    props: list[tuple[str, tuple[str, object]]] = []
    if limits.memory is not None:
        props.append(("MemoryMax", ("t", limits.memory)))
        swap = limits.memory if limits.memory_swap is None else (
            INFINITY if limits.memory_swap == -1 else limits.memory_swap - limits.memory)
        props.append(("MemorySwapMax", ("t", swap)))
    if limits.memory_reservation is not None:
        props.append(("MemoryLow", ("t", limits.memory_reservation)))
    if limits.cpu_quota is not None:
        period = limits.cpu_period or DEFAULT_PERIOD
        props.append(("CPUQuotaPerSecUSec", ("t", limits.cpu_quota * 1_000_000 // period)))
    if limits.cpu_period is not None:
        props.append(("CPUQuotaPeriodUSec", ("t", limits.cpu_period)))
    if limits.cpu_shares is not None:
        props.append(("CPUWeight", ("t", shares_to_weight(limits.cpu_shares))))
    if limits.cpuset_cpus is not None:
        cpus = cpuset_members(limits.cpuset_cpus)
        mask = bytearray(max(cpus) // 8 + 1)
        for cpu in cpus:
            mask[cpu // 8] |= 1 << (cpu % 8)
        props.append(("AllowedCPUs", ("ay", bytes(mask))))
    if limits.pids_limit is not None:
        props.append(("TasksMax", ("t", limits.pids_limit)))
    if limits.blkio_weight is not None:
        props.append(("IOWeight", ("t", blkio_to_io_weight(limits.blkio_weight))))
    per_device: dict[str, list[tuple[str, int]]] = {}
    for dev in limits.devices:
        key, _ = DEVICE_FLAGS[dev.flag]
        value = blkio_to_io_weight(dev.value) if key == "weight" else dev.value
        per_device.setdefault(DEVICE_PROPERTY[key], []).append(
            (dev.written.rpartition(":")[0], value))
    for name, entries in per_device.items():
        props.append((name, ("a(st)", entries)))
    return props


@contextmanager
def _connect(address: str):
    from jeepney.io.blocking import open_dbus_connection

    try:
        conn = open_dbus_connection(address)
    except (OSError, ValueError) as exc:
        raise ContainerError(f"connect to the systemd user bus at {address}: {exc}",
                             hint="start a login session or 'sudo loginctl enable-linger "
                                  f"{os.getuid()}'; or run with --cgroup-manager=cgroupfs "
                                  "or --cgroups=disabled") from exc
    with conn:
        yield conn


class DBusError(ContainerError):
    """systemd answered a call with a D-Bus error (``name`` is its error name)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _call(conn, method: str, signature: str, *args, what: str, path: str = MANAGER_PATH,
          interface: str = MANAGER):
    from jeepney import DBusAddress, MessageType, new_method_call

    addr = DBusAddress(path, bus_name=SYSTEMD, interface=interface)
    try:
        reply = conn.send_and_get_reply(new_method_call(addr, method, signature, args),
                                        timeout=TIMEOUT)
    except TimeoutError as exc:
        raise ContainerError(f"{what}: systemd did not answer in {TIMEOUT} s") from exc
    if reply.header.message_type == MessageType.error:
        name = reply.header.fields.get(4, "error")  # HeaderFields.error_name
        detail = reply.body[0] if reply.body else name
        raise DBusError(name, f"{what}: {detail}")
    return reply.body


def start_scope(address: str, unit: str,
                properties: list[tuple[str, tuple[str, object]]]) -> str:
    """StartTransientUnit and wait for its job; returns the scope's cgroup path."""
    from jeepney import MatchRule, message_bus

    with _connect(address) as conn:
        # No sender= here: signals carry systemd's unique name, and jeepney's
        # local filter compares names literally.
        rule = MatchRule(type="signal", interface=MANAGER, member="JobRemoved",
                         path=MANAGER_PATH)
        conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=TIMEOUT)
        with conn.filter(rule, bufsize=64) as signals:
            # systemd only emits job signals to subscribed clients.
            _call(conn, "Subscribe", "", what=f"subscribe to systemd for {unit}")
            (job,) = _call(conn, "StartTransientUnit", "ssa(sv)a(sa(sv))",
                           unit, "fail", properties, [], what=f"start transient unit {unit}")
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    msg = conn.recv_until_filtered(signals,
                                                   timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError as exc:
                    raise ContainerError(f"start transient unit {unit}: its job did not "
                                         f"finish in {TIMEOUT} s") from exc
                _, job_path, _, result = msg.body
                if job_path == job:
                    break
        if result != "done":
            raise ContainerError(f"start transient unit {unit}: job {result}",
                                 hint=f"see 'journalctl --user -u {unit}'")
        (unit_path,) = _call(conn, "GetUnit", "s", unit, what=f"look up unit {unit}")
        ((_, cgroup),) = _call(conn, "Get", "ss", "org.freedesktop.systemd1.Scope",
                               "ControlGroup", what=f"read the cgroup of {unit}",
                               path=unit_path, interface="org.freedesktop.DBus.Properties")
        return cgroup


def attach(address: str, unit: str, pid: int) -> None:
    """Move ``pid`` into ``unit`` (``prun exec``'s processes join the scope)."""
    with _connect(address) as conn:
        _call(conn, "AttachProcessesToUnit", "ssau", unit, "/", [pid],
              what=f"attach pid {pid} to {unit}")


def set_properties(address: str, unit: str,
                   properties: list[tuple[str, tuple[str, object]]]) -> None:
    """SetUnitProperties, runtime only (``prun update``)."""
    with _connect(address) as conn:
        _call(conn, "SetUnitProperties", "sba(sv)", unit, True, properties,
              what=f"set properties of {unit}")


def stop_scope(address: str, unit: str) -> None:
    """StopUnit; a scope systemd already collected (all processes gone) is fine."""
    with _connect(address) as conn:
        try:
            _call(conn, "StopUnit", "ss", unit, "fail", what=f"stop unit {unit}")
        except DBusError as exc:
            if exc.name != "org.freedesktop.systemd1.NoSuchUnit":
                raise
