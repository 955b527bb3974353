"""`prun run`: flags as podman run's, parsed into a RunRequest.

Rules: parsing only; rootless.supervisor does the work. Options stop at
IMAGE, so `prun run IMAGE ls -l` passes `-l` to the container.
"""

from __future__ import annotations

import click

from rootless.cli.cgroup_flags import cgroup_options, cgroup_request

MULTI = {"multiple": True, "metavar": "VALUE"}


@click.command(context_settings={"help_option_names": ["--help"],
                                 "allow_interspersed_args": False})
@click.option("--rm", is_flag=True, help="Remove the container when it exits.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open (pass it to the container).")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--name", help="Name the container.")
@click.option("-e", "--env", **MULTI, help="Set an environment variable (KEY=VALUE, or KEY to copy).")
@click.option("--env-file", **MULTI, help="Read environment variables from a file.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="User[:group] to run as (name or id).")
@click.option("--group-add", **MULTI, help="Add a supplementary group.")
@click.option("-h", "--hostname", help="Container host name [default: the short id].")
@click.option("--entrypoint", help="Override the image's ENTRYPOINT (string or JSON array).")
@click.option("-v", "--volume", "volumes", **MULTI,
              help="Bind mount HOST-DIR:CTR-DIR[:ro|rw] or a named volume NAME:CTR-DIR.")
@click.option("--mount", "mounts", **MULTI,
              help="type=bind|volume|tmpfs,source=…,target=…[,readonly].")
@click.option("--tmpfs", **MULTI, help="Mount a tmpfs at PATH[:OPTIONS].")
@click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only.")
@click.option("--read-only-tmpfs", type=bool, default=True, show_default=True,
              help="With --read-only, mount tmpfs on /tmp, /var/tmp and /run.")
@click.option("--network", "--net", "network", default=None,
              help="Network mode: slirp4netns[:allow_host_loopback=true,mtu=N,cidr=…,"
                   "enable_ipv6=true,outbound_addr=IP], pasta, none or host [default: slirp4netns].")
@click.option("-p", "--publish", **MULTI,
              help="Publish [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (ranges a-b; no host port: "
                   "a free one).")
@click.option("-P", "--publish-all", is_flag=True,
              help="Publish every port the image EXPOSEs on a free host port.")
@click.option("--dns", **MULTI, help="DNS server for /etc/resolv.conf.")
@click.option("--dns-search", **MULTI, help="DNS search domain ('.' for none).")
@click.option("--dns-option", **MULTI, help="resolv.conf option (e.g. ndots:2).")
@click.option("--add-host", **MULTI, help="Add NAME:IP to /etc/hosts (IP may be host-gateway).")
@click.option("--no-hosts", is_flag=True, help="Keep the image's /etc/hosts.")
@click.option("--cap-add", **MULTI, help="Add a capability (or ALL).")
@click.option("--cap-drop", **MULTI, help="Drop a capability (or ALL).")
@click.option("--privileged", is_flag=True,
              help="All capabilities of the user namespace, no seccomp, no masked paths.")
@click.option("--security-opt", **MULTI,
              help="seccomp=unconfined|FILE, no-new-privileges[=false], mask=…, unmask=….")
@click.option("--init", is_flag=True, help="Run an init (catatonit) as PID 1 that forwards "
                                            "signals and reaps zombies.")
@click.option("--userns", default="", help="User namespace mode: keep-id (or the default).")
@click.option("--uidmap", **MULTI, help="CONTAINER_UID:HOST_UID:SIZE (HOST: 0 = you, 1.. = subuids).")
@click.option("--gidmap", **MULTI, help="CONTAINER_GID:HOST_GID:SIZE.")
@click.option("--rootfs", is_flag=True,
              help="IMAGE is a root filesystem directory (DIR:O: over a copy-on-write layer).")
@click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
              show_default=True, help="Pull the image: when missing, always, or never.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show pull progress.")
@click.option("-d", "--detach", is_flag=True,
              help="Run in the background; print the container id (see prun ps, logs, stop).")
@click.option("--restart", default="no", show_default=True,
              help="With -d: no, on-failure[:N], always or unless-stopped.")
@click.option("--log-opt", **MULTI, help="With -d: max-size=SIZE, max-file=N (log rotation).")
@click.option("--stop-timeout", type=float, default=10.0, show_default=True,
              help="Seconds `prun stop` waits before SIGKILL.")
@cgroup_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run(image: str, command: tuple[str, ...], **opts) -> int:
    """Run a command in a new container.

    \b
    Example:
      prun run --rm busybox echo hi
      prun run --rm -it -v ./data:/data:ro busybox sh
    """
    from rootless import supervisor
    return supervisor.run(build_request(image, command, opts))


def build_request(image: str, command: tuple[str, ...], opts: dict):
    """The RunRequest for run's flags (`prun create` takes the same)."""
    from rootless import supervisor
    from rootless.runspec import RunRequest

    net = opts.pop("network") or supervisor.DEFAULT_NETWORK
    cgroup = cgroup_request(opts)
    return RunRequest(image=image, command=list(command), network=net, cgroup=cgroup,
                      **{k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()})
