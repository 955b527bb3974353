"""prun-overlayfs mounted for real, as the unprivileged test user.

Each test builds layers in tmp dirs, then runs one shell script inside
``unshare`` (a user namespace where the test user is root, plus a mount
namespace): the script mounts with the installed ``prun-overlayfs`` exactly
as podman's mount_program is called, uses real tools (coreutils, tar,
python) on the mount, and unmounts. Results come back as text/JSON and are
checked here, together with what landed in the upper dir on the host.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from fusefs import meta
from tests.support.caps import require, require_device, require_non_root, require_tool
from tests.support.layers import build_layer

pytestmark = pytest.mark.integration

TOOL = Path(sys.executable).parent / "prun-overlayfs"
MULTI = ["--map-users=auto", "--map-groups=auto", "--map-user=0", "--map-group=0"]


@pytest.fixture(autouse=True)
def _host():
    require_non_root()
    require_device("/dev/fuse")
    require_tool("unshare")
    require(TOOL.exists(), f"{TOOL} is not installed (pip install -e . creates it)")


def in_userns(tmp_path: Path, lowers: list[Path], script: str, *, multi: bool = False,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run ``script`` (bash) with the union mounted at $M; upper $U, work $W."""
    m, u, w = tmp_path / "m", tmp_path / "upper", tmp_path / "work"
    for d in (m, u, w):
        d.mkdir(exist_ok=True)
    lowerdir = ":".join(str(p) for p in lowers)
    full = (f"M={shlex.quote(str(m))} U={shlex.quote(str(u))} W={shlex.quote(str(w))}\n"
            f"PY={shlex.quote(sys.executable)}\n"
            f"{shlex.quote(str(TOOL))} -o lowerdir={lowerdir},upperdir=$U,workdir=$W,"
            "rw,nodev,noatime $M\n"
            # cd / first: a script that cd'ed into $M would keep it busy and
            # leave the server (and its namespace) behind.
            "trap 'cd /; if grep -q \" $M \" /proc/self/mounts; then umount $M; fi' EXIT\n"
            + script)
    argv = ["unshare", *(MULTI if multi else ["--map-root-user"]), "--mount",
            "--propagation", "private", "bash", "-euo", "pipefail", "-c", full]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert not _servers_left(m), "the FUSE server outlived its unmount"
    if check:
        assert res.returncode == 0, f"rc={res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


def _servers_left(mountpoint: Path, wait: float = 5.0) -> list[int]:
    """Pids of processes whose command line ends with ``mountpoint``."""
    deadline = time.monotonic() + wait
    while True:
        left = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(cmd) > 1 and cmd[-2] == os.fsencode(mountpoint):
                left.append(int(pid))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_three_layer_stack_through_ls_cat_find_and_tar(tmp_path):
    bottom = build_layer(tmp_path / "bottom", {
        "etc": {"passwd": "root:x:0:0::/root:/bin/sh\n", "motd": "bottom\n"},
        "gone": "x", "d": {"a": "a", "b": "b"}, "o": {"old": ""}, "bin": ("link", "usr/bin"),
        "usr": {"bin": {"tool": "#!/bin/sh\n"}}})
    middle = build_layer(tmp_path / "middle", {
        ".wh.gone": "", "d": {".wh.a": "", "m": "m"}, "o": {".wh..wh..opq": "", "new": ""},
        "etc": {"motd": "middle\n"}})
    top = build_layer(tmp_path / "top", {"d": {"t": "t"}, "etc": {"hostname": "box\n"}})
    res = in_userns(tmp_path, [top, middle, bottom], """
        cd $M
        find . | sort
        echo ---; cat etc/motd etc/hostname
        echo ---; tar -cf - . | tar -tf - | sort
        echo ---; readlink bin; ls bin/
    """)
    listing, motd, tarred, link = res.stdout.split("---\n")
    expected = [".", "./bin", "./d", "./d/b", "./d/m", "./d/t", "./etc", "./etc/hostname",
                "./etc/motd", "./etc/passwd", "./o", "./o/new", "./usr", "./usr/bin",
                "./usr/bin/tool"]
    assert listing.split() == expected
    assert motd == "middle\nbox\n"
    assert sorted(p.rstrip("/") for p in tarred.split()) == expected
    assert link.split() == ["usr/bin", "tool"]


def test_changes_land_in_upper_as_an_oci_diff(tmp_path):
    low = build_layer(tmp_path / "low", {"etc": {"conf": "v1\n", "rm-me": "x"}, "dir": {"s": {"f": "1\n"}},
                                   "var": {"old": {"x": ""}}})
    before = os.lstat(low / "etc/conf")
    res = in_userns(tmp_path, [low], """
        cd $M
        i1=$(stat -c %i etc/conf)
        echo v2 >> etc/conf
        i2=$(stat -c %i etc/conf)
        [ "$i1" = "$i2" ] && echo same-inode
        rm etc/rm-me
        mv dir renamed && cat renamed/s/f
        rm -r var/old && mkdir var/old && ls -A var/old | wc -l
        mkdir -p new/deep && echo hi > new/deep/file && ln new/deep/file new/link
        stat -c %h new/link
        cat etc/conf
    """)
    assert res.stdout.split() == ["same-inode", "1", "0", "2", "v1", "v2"]
    up = tmp_path / "upper"
    assert (up / "etc/.wh.rm-me").exists() and (up / ".wh.dir").exists()
    assert (up / "renamed/s/f").read_text() == "1\n"
    assert (up / "var/old/.wh..wh..opq").exists()
    assert (low / "etc/conf").read_text() == "v1\n" and (low / "dir/s/f").exists()
    assert os.lstat(low / "etc/conf").st_mtime_ns == before.st_mtime_ns
    assert not list((tmp_path / "work/prun-work").iterdir())


def test_hard_links_and_inode_numbers_through_copy_up(tmp_path):
    low = build_layer(tmp_path / "low", {"a": "shared\n", "x": {"y": ""}, "z": ""})
    os.link(low / "a", low / "x/b")
    res = in_userns(tmp_path, [low], """
        cd $M
        ls -Rli . >/dev/null    # listings (READDIRPLUS) fill the kernel's attribute cache
        stat -c '%i %h' a x/b
        echo more >> x/b
        stat -c '%i %h' a x/b
        cat a
        stat -c %i a x x/b x/y z . | sort -u | wc -l
    """)
    lines = res.stdout.splitlines()
    assert lines[0] == lines[1] == lines[2] == lines[3]
    assert lines[0].split()[1] == "2"
    assert lines[4:6] == ["shared", "more"]
    assert lines[6] == "5"      # a and x/b share one inode; all others differ


def test_big_directories_list_like_the_host(tmp_path):
    # Listings carry attributes (READDIRPLUS) and span many kernel requests
    # here; what find prints through the mount, twice, must be the layer's.
    low = tmp_path / "low"
    for d in range(3):
        sub = low / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(1500):
            (sub / f"file-with-a-longish-name-{i:05}").write_text("x" * (i % 7))
        os.symlink("file-with-a-longish-name-00001", sub / "link")
        os.link(sub / "file-with-a-longish-name-00002", sub / "hard")
    fmt = "'%p %s %m %y %n %l\\n'"
    res = in_userns(tmp_path, [low], f"""
        (cd $M && find . -mindepth 1 -printf {fmt} | sort)
        echo ---
        (cd $M && find . -mindepth 1 -printf {fmt} | sort)
        echo ---
        (cd {low} && find . -mindepth 1 -printf {fmt} | sort)
    """)
    first, second, host = res.stdout.split("---\n")
    assert first.count("\n") == 3 * 1502 + 3
    assert first == second == host


def test_tar_extract_into_the_mount_matches_the_host(tmp_path):
    src = tmp_path / "src"
    for i in range(40):
        d = src / f"d{i}"
        d.mkdir(parents=True)
        for j in range(10):
            (d / f"f{j}").write_text(f"{i}-{j}\n" * (j + 1))
        os.symlink(f"f{i % 10}", d / "sym")
        os.link(d / "f0", d / "hard")
        os.chmod(d / "f1", 0o751)
    tarball = tmp_path / "t.tar"
    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info
    with tarfile.open(tarball, "w") as tf:
        tf.add(src, arcname=".", filter=as_root)
    host = tmp_path / "host"
    host.mkdir()
    low = build_layer(tmp_path / "low", {"x": {}})
    res = in_userns(tmp_path, [low], f"""
        tar -C $M/x -xf {tarball}
        tar -C {host} -xf {tarball}
        diff -r --no-dereference $M/x {host} && echo same
        find $M/x -type f | wc -l
        stat -c '%h %a' $M/x/d3/hard $M/x/d3/f1
    """)
    assert res.stdout.split() == ["same", "440", "2", "644", "1", "751"]


PY_CHECKS = r"""
import errno, json, mmap, os, socket, stat, sys
m = sys.argv[1]
out = {}
def err(fn, *a):
    try:
        fn(*a)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"
p = f"{m}/data"
with open(p, "r+b") as f:                     # shared writable mmap of a lower file
    mm = mmap.mmap(f.fileno(), 0)
    mm[0:5] = b"HELLO"
    mm.flush(); mm.close()
out["mmap"] = open(p, "rb").read(11).decode()
fd = os.open(f"{m}/log", os.O_WRONLY | os.O_APPEND)
os.write(fd, b"two\n"); os.close(fd)
out["append"] = open(f"{m}/log").read()
out["excl"] = err(os.open, f"{m}/log", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
fd = os.open(f"{m}/tmpfile", os.O_RDWR | os.O_CREAT, 0o600)
os.unlink(f"{m}/tmpfile")
os.write(fd, b"still here")
out["unlinked"] = [os.pread(fd, 20, 0).decode(), os.fstat(fd).st_size, os.path.exists(f"{m}/tmpfile")]
os.ftruncate(fd, 5)
out["unlinked"].append(os.pread(fd, 20, 0).decode())
os.close(fd)
out["long"] = err(os.open, f"{m}/" + "n" * 256, os.O_CREAT | os.O_WRONLY)
out["mknod_chr"] = err(os.mknod, f"{m}/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
os.mkfifo(f"{m}/fifo", 0o640)
out["fifo"] = stat.S_ISFIFO(os.stat(f"{m}/fifo").st_mode)
s = socket.socket(socket.AF_UNIX); s.bind(f"{m}/sock"); s.listen()
c = socket.socket(socket.AF_UNIX); c.connect(f"{m}/sock"); c.send(b"x")
out["socket"] = [stat.S_ISSOCK(os.stat(f"{m}/sock").st_mode), s.accept()[0].recv(1).decode()]
os.setxattr(f"{m}/data", "user.note", b"v")
out["xattr"] = [os.getxattr(f"{m}/data", "user.note").decode(), sorted(os.listxattr(f"{m}/data"))]
out["trusted"] = err(os.setxattr, f"{m}/data", "trusted.x", b"1")
fd = os.open(f"{m}/big", os.O_RDWR | os.O_CREAT, 0o644)
os.posix_fallocate(fd, 0, 1 << 20); os.fsync(fd); os.fdatasync(fd)
out["fallocate"] = os.fstat(fd).st_size; os.close(fd)
out["statfs"] = os.statvfs(m).f_namemax
os.truncate(f"{m}/log", 3)
out["truncate"] = open(f"{m}/log").read()
fd = os.open(f"{m}/digits", os.O_WRONLY)   # part of an uncached page, write-only:
os.pwrite(fd, b"X", 3); os.close(fd)       # the write-back cache reads the rest first
out["wronly"] = open(f"{m}/digits").read()
from fusefs._libc import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2
open(f"{m}/mine", "w").write("mine")
out["exchange"] = [err(renameat2, f"{m}/mine", f"{m}/swap", RENAME_EXCHANGE),
                   open(f"{m}/mine").read(), open(f"{m}/swap").read()]
out["noreplace"] = err(renameat2, f"{m}/mine", f"{m}/swap", RENAME_NOREPLACE)
print(json.dumps(out))
"""


def test_file_api_semantics_with_python(tmp_path):
    low = build_layer(tmp_path / "low", {"data": "hello world\n", "log": "one\n", "swap": "low",
                                         "digits": "0123456789\n"})
    (tmp_path / "checks.py").write_text(PY_CHECKS)
    res = in_userns(tmp_path, [low], f'$PY {tmp_path / "checks.py"} $M')
    out = json.loads(res.stdout)
    assert out == {
        "mmap": "HELLO world", "append": "one\ntwo\n", "excl": "EEXIST",
        "unlinked": ["still here", 10, False, "still"], "long": "ENAMETOOLONG", "mknod_chr": "EPERM",
        "fifo": True, "socket": [True, "x"], "xattr": ["v", ["user.note"]],
        "trusted": "EPERM", "fallocate": 1 << 20, "statfs": 255, "truncate": "one",
        "wronly": "012X456789\n",
        "exchange": ["ok", "low", "mine"], "noreplace": "EEXIST"}
    assert (low / "data").read_text() == "hello world\n"


def test_ownership_and_modes_come_from_metadata(tmp_path):
    require_tool("setpriv")
    low = build_layer(tmp_path / "low", {"secret": "s3cret\n", "owned": "", "null": "", "pub": "p\n"})
    meta.write(str(low / "secret"), meta.Meta(0, 0, 0o600))
    meta.write(str(low / "owned"), meta.Meta(1000, 1000, 0o4755))
    meta.write(str(low / "null"), meta.Meta(0, 0, 0o666, stat.S_IFCHR, os.makedev(1, 3)))
    res = in_userns(tmp_path, [low], """
        cd $M
        stat -c '%n %u %g %a %F %t %T' secret owned null
        setpriv --reuid=1000 --regid=1000 --clear-groups cat secret 2>&1 || echo denied
        setpriv --reuid=1000 --regid=1000 --clear-groups cat pub
        echo x > mine && chown 1234:1235 mine && chmod 2750 mine
        stat -c '%n %u %g %a' mine
    """, multi=True)
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["secret", "0", "0", "600", "regular", "file", "0", "0"]
    assert lines[1].split()[:4] == ["owned", "1000", "1000", "4755"]
    assert lines[2].split() == ["null", "0", "0", "666", "character", "special", "file",
                                "1", "3"]
    assert "Permission denied" in lines[3] and lines[4] == "denied"
    assert lines[5] == "p"
    assert lines[6].split() == ["mine", "1234", "1235", "2750"]
    disk = os.lstat(tmp_path / "upper/mine")
    assert disk.st_uid == os.getuid() and not disk.st_mode & stat.S_ISGID
    assert meta.read(str(tmp_path / "upper/mine")) == meta.Meta(1234, 1235, 0o2750)


def test_sigkill_leaves_a_consistent_upper_and_a_cleanable_mount(tmp_path):
    low = build_layer(tmp_path / "low", {"many": {f"f{i}": f"{i}\n" * 2000 for i in range(300)}})
    res = in_userns(tmp_path, [low], """
        ( for f in $M/many/*; do echo tail >> $f; done ) 2>/dev/null &
        sleep 0.3
        pid=$(pgrep -u "$(id -u)" -f "prun-overlayfs .*$M\\$")
        kill -9 $pid
        # kill returns before the server is gone; its /dev/fuse fd closes on exit.
        while [ -e /proc/$pid ]; do sleep 0.01; done
        wait || true
        ls $M 2>&1 | grep -c 'not connected' || true
        umount $M && echo unmounted
    """)
    assert res.stdout.split() == ["1", "unmounted"]
    # Remount: every file is whole, either the lower one or the appended copy.
    res = in_userns(tmp_path, [low], """
        cat $M/many/* | grep -vc tail
        ls $W/prun-work | wc -l
    """)
    assert res.stdout.split() == ["600000", "0"]
    for f in (tmp_path / "upper/many").iterdir():
        i = f.name[1:]
        assert f.read_text() in (f"{i}\n" * 2000, f"{i}\n" * 2000 + "tail\n")


def test_mount_errors_are_reported(tmp_path):
    res = in_userns(tmp_path, [tmp_path / "missing"], "true", check=False)
    assert res.returncode == 1
    assert "prun-overlayfs: error: mount" in res.stderr and "missing" in res.stderr


def test_many_processes_at_once(tmp_path):
    low = build_layer(tmp_path / "low", {"shared": {f"f{i}": f"{i}\n" * 500 for i in range(50)}})
    res = in_userns(tmp_path, [low], """
        work() {
            mkdir $M/p$1
            for i in $(seq 60); do
                echo "$1-$i" > $M/p$1/n$i
                mv $M/p$1/n$i $M/p$1/m$i
                cat $M/shared/f$((i % 50)) >> $M/p$1/m$i
                echo "$1" >> $M/shared/f$((i % 50))
            done
        }
        for p in 1 2 3 4 5 6; do work $p & done
        wait
        ls $M/p*/ | grep -c '^m'
        cat $M/shared/f* | grep -vc '^[0-9]*$' || true
        cat $M/shared/f* | wc -l
        head -1 $M/p3/m7
    """)
    assert res.stdout.split() == ["360", "0", str(50 * 500 + 360), "3-7"]
