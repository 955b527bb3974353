"""Limit flags → Limits → cgroup v2 values and systemd properties (podman's rules)."""

import pytest

from rootless.cgroups.limits import parse_limits, v2_files
from rootless.cgroups.systemd import INFINITY, scope_properties
from rootless.errors import UsageError


def devnum(path):
    if path == "/dev/sda":
        return 8, 0
    raise FileNotFoundError(2, "No such file or directory")


def limits(**opts):
    return parse_limits(opts, devnum)


def test_issue_example_maps_to_v2_files():
    lim = limits(memory="256m", cpus="0.5", pids_limit="100")
    assert v2_files(lim) == {"memory.max": str(256 << 20), "memory.swap.max": str(256 << 20),
                             "cpu.max": "50000 100000", "pids.max": "100"}
    assert lim.required() == {"memory": ["--memory 256m"], "cpu": ["--cpus 0.5"],
                              "pids": ["--pids-limit 100"]}


@pytest.mark.parametrize("text,value", [("6m", 6 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29),
                                        ("10485760", 10 << 20), ("64mb", 64 << 20)])
def test_memory_sizes(text, value):
    assert limits(memory=text).memory == value


@pytest.mark.parametrize("opts,needle", [
    ({"memory": "lots"}, "parse --memory 'lots': not a size"),
    ({"memory": "1m"}, "the minimum is 6m"),
    ({"memory_swap": "1g"}, "--memory-swap 1g: it needs --memory"),
    ({"memory": "1g", "memory_swap": "512m"}, "it is less than --memory"),
    ({"memory": "64m", "memory_reservation": "128m"}, "more than --memory"),
    ({"cpus": "0.5", "cpu_quota": "50000"}, "they set the same limit"),
    ({"cpus": "0"}, "must be more than 0"),
    ({"cpus": "half"}, "not a number"),
    ({"cpu_quota": "10"}, "the minimum is 1000"),
    ({"cpu_shares": "1"}, "between 2 and 262144"),
    ({"cpuset_cpus": "3-1"}, "not a CPU list"),
    ({"pids_limit": "ten"}, "not an integer"),
    ({"blkio_weight": "5"}, "between 10 and 1000"),
    ({"device_read_bps": ("sda:1mb",)}, "expected DEVICE:VALUE"),
    ({"device_write_iops": ("/dev/nope:10",)}, "/dev/nope: No such file"),
])
def test_bad_values_name_the_flag(opts, needle):
    with pytest.raises(UsageError) as err:
        limits(**opts)
    assert needle in err.value.message


def test_swap_rules():
    assert v2_files(limits(memory="64m", memory_swap="-1"))["memory.swap.max"] == "max"
    assert v2_files(limits(memory="64m", memory_swap="100m"))["memory.swap.max"] == str(36 << 20)
    assert v2_files(limits(memory="64m", memory_swap="64m"))["memory.swap.max"] == "0"


def test_unlimited_values_request_nothing():
    assert not limits(pids_limit="-1", cpu_quota="-1")
    assert not limits()


def test_cpu_conversions():
    files = v2_files(limits(cpu_quota="20000", cpu_period="50000", cpu_shares="1024"))
    assert files["cpu.max"] == "20000 50000"
    assert files["cpu.weight"] == "39"          # crun: 1 + (1024-2)*9999/262142
    assert v2_files(limits(cpus="1.5", cpu_period="200000"))["cpu.max"] == "300000 200000"
    assert v2_files(limits(cpuset_cpus="0-1, 3"))["cpuset.cpus"] == "0-1,3"


def test_io_limits():
    lim = limits(blkio_weight="500", device_read_bps=("/dev/sda:1mb",),
                 device_write_iops=("/dev/sda:300",), blkio_weight_device=("/dev/sda:1000",))
    files = v2_files(lim)
    assert files["io.weight"] == "default 4950\n8:0 10000"
    assert files["io.max"] == "8:0 rbps=1048576 wiops=300"
    assert lim.required() == {"io": ["--blkio-weight 500", "--device-read-bps /dev/sda:1mb",
                                     "--device-write-iops /dev/sda:300",
                                     "--blkio-weight-device /dev/sda:1000"]}


def test_scope_properties():
    lim = limits(memory="64m", cpus="0.2", pids_limit="8", cpuset_cpus="0,9",
                 device_read_bps=("/dev/sda:1mb",), memory_swap="-1")
    props = dict(scope_properties(lim, 4242, "prun container abc", "box.slice"))
    assert props["PIDs"] == ("au", [4242])
    assert props["Delegate"] == ("b", True)
    assert props["Slice"] == ("s", "box.slice")
    assert props["MemoryMax"] == ("t", 64 << 20)
    assert props["MemorySwapMax"] == ("t", INFINITY)
    assert props["CPUQuotaPerSecUSec"] == ("t", 200_000)
    assert props["TasksMax"] == ("t", 8)
    assert props["AllowedCPUs"] == ("ay", bytes([0b1, 0b10]))
    assert props["IOReadBandwidthMax"] == ("a(st)", [("/dev/sda", 1 << 20)])
