"""`prun run IMAGE` against images pulled from the loopback registry, as the
unprivileged test user: image config, ownership metadata, copy-on-write,
TTY, signals, --init."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from tests.integration.run_support import prun, require_run_host

pytestmark = pytest.mark.integration


def _pulled(ref: str, tmp_path_factory) -> tuple[str, dict]:
    """``ref`` pulled into a store of its own; (ref, env naming that store)."""
    require_run_host()
    env = {"PRUN_ROOT": str(tmp_path_factory.mktemp("run-store"))}
    out = prun("pull", "-q", "--tls-verify=false", ref, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return ref, env


@pytest.fixture(scope="module")
def image(plain_registry, tmp_path_factory):
    """busybox pulled once into a store shared by this module's tests."""
    return _pulled(f"{plain_registry.host}/busybox", tmp_path_factory)


def run(image, *args, **kw):
    ref, env = image
    at = args.index("IMAGE")
    return prun("run", "--rm", *args[:at], ref, *args[at + 1:], env=env, **kw)


def test_echo_hi(image):
    out = run(image, "IMAGE", "echo", "hi")
    assert (out.returncode, out.stdout, out.stderr) == (0, "hi\n", "")


def test_layers_whiteouts_and_owners_from_the_image(image):
    out = run(image, "IMAGE", "sh", "-c",
              "cat /etc/motd; ls /etc/removed-in-layer2 2>&1; ls /var/cache/app; "
              "stat -c '%u:%g %a %n' /var/lib/postgres /var/lib/postgres/data.txt "
              "/srv/nobody.txt /home/app/notes.txt /bin/suid-marker /tmp")
    lines = out.stdout.splitlines()
    assert lines[0] == "hello from layer 2"
    assert "No such file or directory" in lines[1]
    assert lines[2] == "new"
    assert lines[3:] == ["70:70 700 /var/lib/postgres", "70:70 600 /var/lib/postgres/data.txt",
                         "65534:65534 644 /srv/nobody.txt", "1000:1000 644 /home/app/notes.txt",
                         "0:0 4755 /bin/suid-marker", "0:0 1777 /tmp"]


def test_image_user_owned_file_is_readable_by_that_user_only(image):
    out = run(image, "-u", "postgres", "IMAGE", "cat", "/var/lib/postgres/data.txt")
    assert out.stdout == "secret\n", out.stderr
    out = run(image, "-u", "app", "IMAGE", "cat", "/var/lib/postgres/data.txt")
    assert out.returncode == 1 and "Permission denied" in out.stderr


def test_writes_do_not_change_the_image_for_the_next_container(image):
    out = run(image, "IMAGE", "sh", "-c", "echo changed > /etc/motd; rm /srv/nobody.txt; "
                                          "chown 1000 /bin/busybox; cat /etc/motd")
    assert out.stdout == "changed\n", out.stderr
    out = run(image, "IMAGE", "sh", "-c", "cat /etc/motd /srv/nobody.txt; "
                                          "stat -c %u /bin/busybox")
    assert out.stdout == "hello from layer 2\nnobody's file\n0\n"


def test_without_rm_the_container_dir_stays(image):
    ref, env = image
    out = prun("run", "--name", "keepme", ref, "sh", "-c", "echo data > /kept", env=env)
    assert out.returncode == 0, out.stderr
    containers = [p for p in (os.path.join(env["PRUN_ROOT"], "containers"),)][0]
    assert os.path.islink(os.path.join(containers, "names", "keepme"))
    again = prun("run", "--name", "keepme", ref, "true", env=env)
    assert again.returncode == 125 and "the name is in use" in again.stderr


def test_missing_image_is_an_error_with_the_pull_hint(image):
    ref, env = image
    out = prun("run", "--rm", "--pull", "never", "nosuch-image", "true", env=env)
    assert out.returncode == 125
    assert out.stderr.startswith("prun: error: find image nosuch-image")


def _read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    buf, end = b"", time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _spawn_in_pty(image, *args):
    ref, env = image
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(["prun", "run", "--rm", *args[:args.index("IMAGE")], ref,
                             *args[args.index("IMAGE") + 1:]],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, **env},
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    return proc, master


def test_tty_interactive_with_resize_and_ctrl_c(image):
    proc, master = _spawn_in_pty(image, "-it", "IMAGE", "sh")
    try:
        os.write(master, b"tty; stty size; echo $TERM\n")
        out = _read_until(master, b"xterm")
        assert b"/dev/pts/0" in out and b"30 100" in out, out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.killpg(proc.pid, signal.SIGWINCH)
        time.sleep(0.3)
        os.write(master, b"stty size\n")
        assert b"40 120" in _read_until(master, b"40 120")
        # ^C goes to the container's shell (it survives), then exit 7
        os.write(master, b"sleep 30\n")
        time.sleep(0.5)
        os.write(master, b"\x03")
        os.write(master, b"echo after-int\n")
        assert b"after-int" in _read_until(master, b"after-int\r\n")
        os.write(master, b"exit 7\n")
        assert proc.wait(timeout=20) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_signal_is_forwarded_to_the_container(image):
    ref, env = image
    proc = subprocess.Popen(["prun", "run", "--rm", ref, "sh", "-c",
                             "trap 'echo got-term; exit 5' TERM; echo ready; "
                             "while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline() == "got-term\n"
    assert proc.wait(timeout=20) == 5


def test_init_reaps_and_forwards(image):
    out = run(image, "--init", "IMAGE", "sh", "-c", "cat /proc/1/comm; echo $$")
    assert out.stdout.split()[0] == "prun-init" and out.stdout.split()[1] != "1", out.stderr
    ref, env = image
    proc = subprocess.Popen(["prun", "run", "--rm", "--init", ref, "sleep", "60"],
                            env={**os.environ, **env})
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143


@pytest.fixture(scope="module")
def debian(debian_in_registry, tmp_path_factory):
    """The debootstrap minbase image (it has perl, whose syscall() reaches
    keyctl/add_key directly) pulled into its own store."""
    registry, _ = debian_in_registry
    return _pulled(f"{registry.host}/debian:bookworm", tmp_path_factory)


# x86_64: add_key = 248, keyctl = 250 (KEYCTL_GET_KEYRING_ID of the session keyring)
KEYRING = ('syscall(250, 0, -3, 1) == -1 ? print("keyctl: $!\\n") : print("keyctl: ok\\n");'
           'my ($t, $d, $v) = ("user", "k", "v");'
           'syscall(248, $t, $d, $v, 1, -3) == -1 ? print("add_key: $!\\n") '
           ': print("add_key: ok\\n")')


def test_seccomp_blocks_keyctl_and_add_key(debian):
    out = run(debian, "--network", "none", "IMAGE", "perl", "-e", KEYRING)
    assert out.stdout == "keyctl: Operation not permitted\nadd_key: Operation not permitted\n", \
        out.stderr
    out = run(debian, "--network", "none", "--security-opt", "seccomp=unconfined", "IMAGE",
              "perl", "-e", KEYRING)
    assert "Operation not permitted" not in out.stdout, out.stdout


def test_setuid_binary_in_the_image_gains_nothing(debian):
    # su is setuid root in the image; with no_new_privs and the user's own
    # id as container root it cannot raise a non-root user's privileges.
    out = run(debian, "--network", "none", "-u", "1000", "IMAGE", "sh", "-c",
              "stat -c %a /usr/bin/su; su -c id root </dev/null 2>&1; id -u")
    lines = out.stdout.splitlines()
    assert lines[0] == "4755" and lines[-1] == "1000", out.stdout
    assert "uid=0" not in out.stdout
