"""Image commands: pull, push, images, rmi, tag, load, save, import,
login, logout, history, and the ``image`` group (ls, rm, inspect, prune…).

Flags follow podman's names (``--tls-verify=false``, ``--cert-dir``,
``--creds``, ``--authfile``, ``-q``); progress goes to stderr, results (the
image ID, lines of ``rmi``) to stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from rootless.errors import UsageError


def _registry_opts(fn):
    fn = click.option("--authfile", type=click.Path(dir_okay=False),
                      help="Credentials file [default: $XDG_RUNTIME_DIR/containers/auth.json]."
                      )(fn)
    fn = click.option("--creds", metavar="USER[:PASSWORD]",
                      help="Credentials for the registry (instead of prun login).")(fn)
    fn = click.option("--cert-dir", type=click.Path(file_okay=False),
                      help="Directory with CA certificates (*.crt) for the registry.")(fn)
    fn = click.option("--tls-verify", type=click.BOOL, is_flag=False, flag_value=True,
                      default=None, metavar="BOOL",
                      help="Require HTTPS with a verified certificate [default: true].")(fn)
    return fn


def _options(tls_verify, cert_dir, creds, authfile, platform=None):
    from rootless.images.pull import PullOptions

    if authfile:
        os.environ["REGISTRY_AUTH_FILE"] = authfile
    credentials = None
    if creds:
        user, sep, password = creds.partition(":")
        if not sep:
            password = click.prompt("Password", hide_input=True, err=True)
        credentials = (user, password)
    return PullOptions(platform=platform, tls_verify=tls_verify, cert_dir=cert_dir,
                       credentials=credentials)


def _store():
    from rootless.images.store import Store

    return Store.default()


@click.command()
@click.argument("image")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="Platform to pick from a multi-arch image [default: this host's].")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@_registry_opts
def pull(image, platform, quiet, tls_verify, cert_dir, creds, authfile) -> int:
    """Pull an image from a registry into the local store.

    Prints the image ID on stdout.

    \b
    Example:
      prun pull alpine
      prun pull --tls-verify=false 127.0.0.1:5000/app:1.0
    """
    from rootless.images import pull as pulling

    opts = _options(tls_verify, cert_dir, creds, authfile, platform)
    result = pulling.pull(image, store=_store(), options=opts, quiet=quiet)
    click.echo(result.image_id.split(":")[1])
    return 0


@click.command()
@click.argument("image")
@click.argument("destination", required=False)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@_registry_opts
def push(image, destination, quiet, tls_verify, cert_dir, creds, authfile) -> int:
    """Push an image to a registry.

    \b
    Example:
      prun push myapp 127.0.0.1:5000/team/myapp:1.0 --tls-verify=false
    """
    from rootless.images import push as pushing
    from rootless.images.progress import Reporter

    opts = _options(tls_verify, cert_dir, creds, authfile)
    pushing.push(image, destination, store=_store(), options=opts,
                 reporter=Reporter(quiet=quiet))
    return 0


@click.command("images")
@click.argument("repository", required=False)
@click.option("-q", "--quiet", is_flag=True, help="Print image IDs only.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--no-trunc", is_flag=True, help="Full image IDs.")
@click.option("--digests", is_flag=True, help="Show manifest digests.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Accepted for docker "
              "compatibility (prun stores no intermediate images).")
def images(repository, quiet, fmt, no_trunc, digests, show_all) -> int:
    """List images in the local store.

    \b
    Example:
      prun images
      prun images --format json | jq '.[].Names'
    """
    from rootless.images import manage

    rows = manage.list_images(_store())
    if repository:
        from rootless.images import reference
        wanted = {repository, reference.parse(repository).name,
                  reference.on_registry(reference.parse(repository), "localhost").name}
        rows = [r for r in rows if r.repository in wanted]
    if quiet:
        for image_id in dict.fromkeys(r.id for r in rows):
            click.echo(image_id.split(":")[1] if no_trunc else image_id.split(":")[1][:12])
        return 0
    if fmt == "json":
        seen, out = set(), []
        for r in rows:
            if r.id not in seen:
                seen.add(r.id)
                out.append({"Id": r.id.split(":")[1], "Names": [n for n in r.names if "@" not in n],
                            "Digest": r.digest, "Created": r.created, "Size": r.size})
        click.echo(json.dumps(out, indent=2))
        return 0
    header = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + \
        ["IMAGE ID", "CREATED", "SIZE"]
    table = [header]
    for r in rows:
        iid = r.id if no_trunc else r.id.split(":")[1][:12]
        table.append([r.repository, r.tag] + ([r.digest] if digests else []) +
                     [iid, manage.age(r.created), manage.human_size(r.size)])
    _print_table(table)
    return 0


def _print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@click.command()
@click.argument("images", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Remove even when in use or multiply named.")
@click.option("-a", "--all", "remove_all", is_flag=True, help="Remove all images.")
def rmi(images, force, remove_all) -> int:
    """Remove images from the local store.

    \b
    Example:
      prun rmi alpine
    """
    from rootless.errors import PrunError
    from rootless.images import manage
    from rootless.cli import report

    store = _store()
    if remove_all:
        images = tuple(dict.fromkeys(r.id for r in manage.list_images(store)))
    elif not images:
        raise UsageError("rmi: give at least one image", hint="prun rmi IMAGE [IMAGE...]")
    code = 0
    for text in images:
        try:
            for line in manage.remove(store, text, force):
                click.echo(line)
        except PrunError as exc:
            # Like podman: go on with the others, exit with the failure.
            code = report(exc) if not code else code
    return code


@click.command()
@click.argument("image")
@click.argument("targets", nargs=-1, required=True)
def tag(image, targets) -> int:
    """Add names to an image.

    \b
    Example:
      prun tag alpine myalpine:1.0
    """
    from rootless.images import manage

    manage.tag(_store(), image, list(targets))
    return 0


@click.command()
@click.argument("image")
@click.argument("names", nargs=-1)
def untag(image, names) -> int:
    """Remove names from an image (all of them when none are given); the
    image itself stays.

    \b
    Example:
      prun untag myalpine:1.0
    """
    from rootless.images import manage

    manage.untag(_store(), image, list(names))
    return 0


@click.command()
@click.option("-i", "--input", "input_", type=click.Path(dir_okay=True),
              help="Archive to read [default: stdin].")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
def load(input_, quiet) -> int:
    """Load images from a docker-archive, an oci-archive or an OCI layout.

    \b
    Example:
      prun load -i busybox.tar
      docker save busybox | prun load
    """
    from rootless.images import archive

    store = _store()
    spooled = None
    if input_ is None:
        if sys.stdin.isatty():
            raise UsageError("load: no archive given and stdin is a terminal",
                             hint="prun load -i FILE, or pipe an archive into prun load")
        spooled = archive.spool(sys.stdin.buffer, store)
    try:
        loaded = archive.load(Path(input_) if input_ else spooled, store)
    finally:
        if spooled is not None:
            spooled.unlink()
    if not quiet:
        for item in loaded:
            click.echo("Loaded image: " + (", ".join(item.names) or item.image_id))
    return 0


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="File to write [default: stdout].")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]),
              default="docker-archive", show_default=True, help="Archive format.")
def save(images, output, fmt) -> int:
    """Save images to an archive (docker load and podman load read it).

    \b
    Example:
      prun save -o alpine.tar alpine
    """
    from rootless.images import archive, manage, reference

    store = _store()
    chosen = []
    for text in images:
        image_id, name = manage.find(store, text)
        names = [reference.parse(name).tagged] if name != image_id else []
        chosen.append((image_id, names))
    if output is None:
        if sys.stdout.isatty():
            raise UsageError("save: refusing to write an archive to a terminal",
                             hint="pass -o FILE or redirect stdout")
        archive.save(chosen, sys.stdout.buffer, store, fmt)
        return 0
    tmp = Path(output).with_name(f".{Path(output).name}.prun-tmp")
    try:
        with open(tmp, "wb") as f:
            archive.save(chosen, f, store, fmt)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return 0


@click.command("import")
@click.argument("tarball", type=click.Path(dir_okay=False))
@click.argument("name", required=False)
@click.option("-m", "--message", help="Comment recorded in the image history.")
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, STOPSIGNAL in "
                   "Dockerfile JSON or shell form (repeatable).")
def import_(tarball, name, message, changes) -> int:
    """Create a one-layer image from a root filesystem tarball.

    \b
    Example:
      prun import rootfs.tar.gz myrootfs:1 -c 'CMD ["/bin/sh"]'
    """
    from rootless.images import archive

    config = _changes(changes)
    image_id = archive.import_rootfs(Path(tarball), name, _store(), changes=config,
                                     message=message)
    click.echo(image_id.split(":")[1])
    return 0


def _changes(changes: tuple[str, ...]) -> dict:
    import shlex

    out: dict = {}
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()

        def words() -> list[str]:
            if rest.startswith("["):
                try:
                    return list(json.loads(rest))
                except ValueError as exc:
                    raise UsageError(f"import: --change {change!r}: bad JSON: {exc}") from exc
            return ["/bin/sh", "-c", rest]
        if word in ("CMD", "ENTRYPOINT"):
            out["Cmd" if word == "CMD" else "Entrypoint"] = words()
        elif word == "ENV":
            key, sep, value = rest.partition("=")
            if not sep:
                key, _, value = rest.partition(" ")
            out.setdefault("Env", []).append(f"{key}={value}")
        elif word == "WORKDIR":
            out["WorkingDir"] = rest
        elif word == "USER":
            out["User"] = rest
        elif word == "STOPSIGNAL":
            out["StopSignal"] = rest
        elif word == "EXPOSE":
            for port in rest.split():
                out.setdefault("ExposedPorts", {})[port if "/" in port else f"{port}/tcp"] = {}
        elif word == "LABEL":
            for item in shlex.split(rest):
                k, _, v = item.partition("=")
                out.setdefault("Labels", {})[k] = v
        else:
            raise UsageError(f"import: --change {change!r}: unsupported instruction {word}",
                             hint="CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, "
                                  "STOPSIGNAL")
    return out


@click.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name [default: prompt].")
@click.option("-p", "--password", help="Password (visible in ps; prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_registry_opts
def login(registry, username, password, password_stdin, tls_verify, cert_dir, creds,
          authfile) -> int:
    """Log in to a registry; credentials are stored 0600 like podman's auth.json.

    \b
    Example:
      echo "$TOKEN" | prun login -u me --password-stdin registry.example.com
    """
    from rootless.images import auth, config
    from rootless.images.registry.client import RegistryClient

    if authfile:
        os.environ["REGISTRY_AUTH_FILE"] = authfile
    host = _registry_host(registry)
    if creds:
        username, _, password = creds.partition(":")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username:
        username = click.prompt("Username", err=True)
    if password is None:
        password = click.prompt("Password", hide_input=True, err=True)
    client = RegistryClient(host, op=f"log in to {host}", tls_verify=tls_verify,
                            cert_dir=cert_dir, credentials=(username, password),
                            registries=config.load())
    try:
        client.login_check()
    finally:
        client.close()
    auth.save(host, username, password)
    click.echo("Login Succeeded!")
    return 0


@click.command()
@click.argument("registry", required=False)
@click.option("-a", "--all", "all_", is_flag=True, help="Forget every registry.")
@click.option("--authfile", type=click.Path(dir_okay=False), help="Credentials file.")
def logout(registry, all_, authfile) -> int:
    """Forget the credentials stored for a registry.

    \b
    Example:
      prun logout registry.example.com
    """
    from rootless.images import auth

    if authfile:
        os.environ["REGISTRY_AUTH_FILE"] = authfile
    if all_:
        path = auth.store_file()
        path.unlink(missing_ok=True)
        click.echo(f"Removed login credentials for all registries ({path})")
        return 0
    if not registry:
        raise UsageError("logout: give a registry or --all", hint="prun logout REGISTRY")
    host = _registry_host(registry)
    if not auth.remove(host):
        raise UsageError(f"log out of {host}: not logged in",
                         hint="prun login REGISTRY stores credentials")
    click.echo(f"Removed login credentials for {host}")
    return 0


def _registry_host(text: str) -> str:
    host = text.removeprefix("https://").removeprefix("http://").split("/")[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


@click.command()
@click.argument("image")
@click.option("--no-trunc", is_flag=True, help="Full IDs and commands.")
@click.option("-q", "--quiet", is_flag=True, help="IDs only.")
def history(image, no_trunc, quiet) -> int:
    """Show the layers an image was built from, newest first.

    \b
    Example:
      prun history alpine
    """
    from rootless.images import manage

    rows = manage.history(_store(), image)
    if quiet:
        for r in rows:
            click.echo(r["id"] if no_trunc else r["id"][:12])
        return 0
    table = [["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"]]
    for r in rows:
        by = r["created_by"] if no_trunc or len(r["created_by"]) <= 45 else \
            r["created_by"][:42] + "..."
        table.append([r["id"] if no_trunc else r["id"][:12], manage.age(r["created"]), by,
                      manage.human_size(r["size"]), r["comment"]])
    _print_table(table)
    return 0


@click.command("inspect")
@click.argument("images", nargs=-1, required=True)
def inspect(images) -> int:
    """Show image details as JSON.

    \b
    Example:
      prun image inspect alpine | jq '.[0].Config.Cmd'
    """
    from rootless.images import manage

    store = _store()
    click.echo(json.dumps([manage.inspect(store, text) for text in images], indent=4))
    return 0


@click.command()
@click.option("-a", "--all", "all_unused", is_flag=True,
              help="Remove every image no container uses, not only unnamed ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def prune(all_unused, force) -> int:
    """Remove unnamed (dangling) images and orphaned layers.

    \b
    Example:
      prun image prune -af
    """
    from rootless.images import manage

    if not force and sys.stdin.isatty():
        what = "all images without containers" if all_unused else "all dangling images"
        if not click.confirm(f"This removes {what}. Continue?", err=True):
            return 0
    for image_id in manage.prune(_store(), all_unused):
        click.echo(image_id.split(":")[1])
    return 0


@click.group("image")
def image() -> None:
    """Manage images (ls, rm, inspect, prune, pull, push, tag, history, …).

    \b
    Example:
      prun image ls
    """


for _name, _cmd in {"ls": images, "list": images, "rm": rmi, "inspect": inspect,
                    "prune": prune, "pull": pull, "push": push, "tag": tag, "untag": untag,
                    "history": history, "load": load, "save": save,
                    "import": import_}.items():
    image.add_command(_cmd, _name)
