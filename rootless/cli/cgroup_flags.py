"""The resource-limit and cgroup flags of ``prun run`` (podman's spellings).

``cgroup_options`` is a click decorator the run command applies;
``cgroup_request`` pops those flags from the command's keyword arguments and
returns a validated and planned ``CgroupRequest``: a bad value or a limit
this host cannot enforce fails here (exit 125), before the helper starts.
"""

from __future__ import annotations

import click

MULTI = {"multiple": True, "metavar": "DEVICE:VALUE"}
OPTIONS = [
    click.option("-m", "--memory", metavar="SIZE", help="Memory limit (e.g. 256m, 1g)."),
    click.option("--memory-swap", metavar="SIZE",
                 help="Memory plus swap limit; -1 = unlimited swap [default: twice --memory]."),
    click.option("--memory-reservation", metavar="SIZE", help="Memory soft limit (memory.low)."),
    click.option("--cpus", metavar="N", help="Number of CPUs (e.g. 0.5): sets the CPU quota."),
    click.option("--cpu-shares", "-c", metavar="N", help="CPU shares (relative weight, 2-262144)."),
    click.option("--cpu-quota", metavar="USEC", help="CPU time per period, in microseconds."),
    click.option("--cpu-period", metavar="USEC", help="CPU quota period [default: 100000]."),
    click.option("--cpuset-cpus", metavar="LIST", help="CPUs the container may use (0-3,5)."),
    click.option("--pids-limit", metavar="N", help="Maximum number of processes (-1: none)."),
    click.option("--blkio-weight", metavar="N", help="Block I/O weight (10-1000)."),
    click.option("--blkio-weight-device", **MULTI, help="Block I/O weight of one device."),
    click.option("--device-read-bps", **MULTI, help="Read rate limit of a device (e.g. 1mb)."),
    click.option("--device-write-bps", **MULTI, help="Write rate limit of a device."),
    click.option("--device-read-iops", **MULTI, help="Read operations per second of a device."),
    click.option("--device-write-iops", **MULTI, help="Write operations per second of a device."),
    click.option("--cgroups", "cgroups_mode",
                 type=click.Choice(["enabled", "disabled", "no-conmon"]), default="enabled", show_default=True,
                 help="Put the container in its own cgroup, or not (disabled: no limits)."),
    click.option("--cgroup-manager", type=click.Choice(["systemd", "cgroupfs"]), default=None,
                 help="systemd (a delegated user scope) or cgroupfs (below your own "
                      "delegated cgroup) [default: systemd when your user instance runs]."),
    click.option("--cgroup-parent", metavar="SLICE|PATH",
                 help="A systemd slice, or with cgroupfs the cgroup path, to create under."),
]
KEYS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpu_quota",
        "cpu_period", "cpuset_cpus", "pids_limit", "blkio_weight", "blkio_weight_device",
        "device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops")


def cgroup_options(fn):
    for option in reversed(OPTIONS):
        fn = option(fn)
    return fn


def limit_options(fn):
    """Only the limit flags (``prun update``)."""
    for option in reversed(OPTIONS[:len(KEYS)]):
        fn = option(fn)
    return fn


def cgroup_request(opts: dict):
    """Pop the cgroup flags out of ``opts``; return a CgroupRequest."""
    from rootless.cgroups.limits import parse_limits
    from rootless.cgroups.manager import CgroupRequest, planned

    values = {key: opts.pop(key) for key in KEYS}
    return planned(CgroupRequest(parse_limits(values), opts.pop("cgroups_mode"),
                                 opts.pop("cgroup_manager"), opts.pop("cgroup_parent")))
