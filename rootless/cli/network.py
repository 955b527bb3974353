"""Network commands: ``prun port``.

Rules: a running container's ports come from its network state
(``<runtime>/c/<id12>/net/ports.json``, written once slirp4netns forwards
them, random host ports included); otherwise from the container's record
(``config["ports"]``). Output is docker's.
"""

from __future__ import annotations

import click

from rootless.errors import NotFoundError


@click.command(short_help="List a container's published ports.")
@click.argument("container")
@click.argument("private_port", required=False)
def port(container: str, private_port: str | None) -> int:
    """List the port mappings of CONTAINER, or the host address of PRIVATE_PORT[/PROTO].

    \b
    Example:
      prun port web 80/tcp
    """
    from netstack.network import from_records, read_ports
    from netstack.ports import format_mapping
    from rootless.containers.store import Store

    store = Store()
    c = store.resolve(container)
    mappings = read_ports(store.run_dir(c.id) / "net")
    if mappings is None:
        mappings = from_records(c.config.get("ports", []))
    if private_port is None:
        for m in mappings:
            click.echo(format_mapping(m))
        return 0
    number, _, proto = private_port.partition("/")
    hits = [m for m in mappings if str(m.container_port) == number and m.proto == (proto or "tcp")]
    if not hits:
        raise NotFoundError(f"find port {private_port} of container {container}: "
                            "it is not published",
                            hint=f"'prun port {container}' lists the published ports")
    for m in hits:
        click.echo(format_mapping(m).split(" -> ", 1)[1])
    return 0
