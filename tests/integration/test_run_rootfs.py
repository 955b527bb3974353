"""`prun run --rootfs DIR[:O]` as the unprivileged test user: namespaces,
id maps, mounts, exit codes and security, on a busybox tree (no image store
needed)."""

from __future__ import annotations

import pytest

from tests.integration.run_support import prun, require_run_host
from tests.support.rootfs import build_busybox_rootfs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    require_run_host()
    return str(build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs"))


def test_echo_and_exit_code(bb):
    out = prun("run", "--rm", "--rootfs", bb, "echo", "hi")
    assert (out.returncode, out.stdout, out.stderr) == (0, "hi\n", "")
    assert prun("run", "--rm", "--rootfs", bb, "sh", "-c", "exit 42").returncode == 42


def test_not_found_is_127_and_not_executable_is_126(bb):
    out = prun("run", "--rm", "--rootfs", bb, "nosuchcmd")
    assert out.returncode == 127
    assert "prun: error: run nosuchcmd: executable file not found in $PATH" in out.stderr
    out = prun("run", "--rm", "--rootfs", bb, "/etc/passwd")
    assert out.returncode == 126
    assert "run /etc/passwd: Permission denied" in out.stderr


def test_overlay_rootfs_writes_do_not_reach_the_tree(bb):
    out = prun("run", "--rm", "--rootfs", bb + ":O", "sh", "-c",
               "echo changed > /home/app/notes.txt && rm /srv/nobody.txt && "
               "cat /home/app/notes.txt")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "changed\n"
    out = prun("run", "--rm", "--rootfs", bb + ":O", "cat", "/home/app/notes.txt",
               "/srv/nobody.txt")
    assert out.stdout == "app's notes\nnobody's file\n"


def test_pid_1_hostname_and_root_identity(bb):
    out = prun("run", "--rm", "--hostname", "box1", "--rootfs", bb, "sh", "-c",
               "echo $$; hostname; id -u; cat /etc/hostname")
    assert out.stdout.split() == ["1", "box1", "0", "box1"]


def test_default_hostname_is_short_id_and_ps_sees_only_the_container(bb):
    out = prun("run", "--rm", "--rootfs", bb, "sh", "-c", "hostname; ps -o pid,comm; true")
    lines = out.stdout.split("\n")
    assert len(lines[0]) == 12 and all(c in "0123456789abcdef" for c in lines[0])
    procs = [line.split() for line in lines[2:] if line.strip()]
    assert [comm for _, comm in procs] == ["sh", "ps"] and procs[0][0] == "1"


def test_user_flag_resolves_names_and_numbers(bb):
    out = prun("run", "--rm", "-u", "app", "--rootfs", bb, "id")
    assert out.stdout.strip() == "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)"
    out = prun("run", "--rm", "-u", "4321:70", "--rootfs", bb + ":O", "id")
    assert out.stdout.strip() == "uid=4321(4321) gid=70(postgres) groups=70(postgres)"
    out = prun("run", "--rm", "-u", "nosuchuser", "--rootfs", bb, "id")
    assert out.returncode == 126
    assert "unable to find user nosuchuser" in out.stderr


def test_keep_id_runs_as_the_host_user_and_bind_mounts_keep_owners(bb, tmp_path):
    import os
    (tmp_path / "mine").write_text("x")
    out = prun("run", "--rm", "--userns=keep-id", "-v", f"{tmp_path}:/h", "--rootfs", bb + ":O",
               "sh", "-c", "id -u; stat -c %u /h/mine; touch /h/new; stat -c %u:%g /etc/passwd;"
               " touch /tmp/made; stat -c %u /tmp/made")
    me = str(os.getuid())
    # Image files keep their owners (root) in the nested namespace; what the
    # user creates in the container is theirs.
    assert out.stdout.split() == [me, me, "0:0", me], out.stderr
    assert (tmp_path / "new").stat().st_uid == os.getuid()


def test_uidmap_shifts_the_container_ids(bb):
    out = prun("run", "--rm", "--network", "none", "--uidmap", "0:1:5000", "--rootfs",
               bb + ":O", "sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd")
    assert out.stdout.split() == ["0", "0", "1", "5000", "0"], out.stderr


def test_bind_volume_rw_and_ro(bb, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    out = prun("run", "--rm", "-v", f"{data}:/data", "--rootfs", bb, "sh", "-c",
               "cat /data/in.txt; echo from container > /data/out.txt")
    assert out.stdout == "from host\n"
    assert (data / "out.txt").read_text() == "from container\n"
    out = prun("run", "--rm", "-v", f"{data}:/data:ro", "--rootfs", bb, "sh", "-c",
               "echo x > /data/new.txt")
    assert out.returncode == 1
    assert "Read-only file system" in out.stderr
    assert not (data / "new.txt").exists()


def test_relative_bind_and_missing_source_names_the_flag(bb, tmp_path):
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "f").write_text("rel\n")
    out = prun("run", "--rm", "-v", "./rel:/r", "--rootfs", bb, "cat", "/r/f", cwd=tmp_path)
    assert out.stdout == "rel\n", out.stderr
    out = prun("run", "--rm", "-v", "./nosuch:/r", "--rootfs", bb, "true", cwd=tmp_path)
    assert out.returncode == 125
    assert "prun: error: mount -v ./nosuch:/r: ./nosuch: no such file or directory" in out.stderr


def test_named_volume_persists_across_containers(bb):
    assert prun("run", "--rm", "-v", "vol1:/v", "--rootfs", bb + ":O", "sh", "-c",
                "echo kept > /v/f").returncode == 0
    out = prun("run", "--rm", "-v", "vol1:/v", "--rootfs", bb + ":O", "cat", "/v/f")
    assert out.stdout == "kept\n"


def test_read_only_root_with_tmpfs_and_tmpfs_flag(bb):
    out = prun("run", "--rm", "--read-only", "--tmpfs", "/scratch", "--rootfs", bb + ":O", "sh",
               "-c", "touch /x 2>&1; touch /tmp/ok /scratch/ok && echo tmp-ok")
    assert "Read-only file system" in out.stdout
    assert "tmp-ok" in out.stdout


def test_proc_masking_and_read_only_proc_sys(bb):
    out = prun("run", "--rm", "--rootfs", bb, "sh", "-c",
               "cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; "
               "echo 1 > /proc/sys/kernel/ns_last_pid 2>&1 || echo denied")
    lines = out.stdout.split("\n")
    assert lines[0].strip() == "0" and lines[1].strip() == "0"
    assert "denied" in out.stdout


def test_cap_drop_and_default_caps(bb):
    out = prun("run", "--rm", "--rootfs", bb, "grep", "CapEff", "/proc/self/status")
    assert out.stdout.split()[1] == "00000000800405fb"  # podman's default set
    out = prun("run", "--rm", "--cap-drop", "CHOWN", "--rootfs", bb + ":O", "sh", "-c",
               "chown 1000 /etc/hostname 2>&1; grep CapEff /proc/self/status")
    assert "Operation not permitted" in out.stdout
    assert out.stdout.split()[-1] == "00000000800405fa"


def test_mount_needs_sys_admin_and_nested_userns_works_like_podman(bb):
    out = prun("run", "--rm", "--rootfs", bb, "mount", "-t", "tmpfs", "none", "/tmp")
    assert out.returncode != 0 and "are you root" in out.stderr
    out = prun("run", "--rm", "--cap-add", "SYS_ADMIN", "--rootfs", bb, "mount", "-t", "tmpfs",
               "none", "/tmp")
    assert out.returncode == 0, out.stderr
    assert prun("run", "--rm", "--rootfs", bb, "unshare", "-r", "true").returncode == 0


def test_escape_attempts_fail(bb):
    out = prun("run", "--rm", "--rootfs", bb, "sh", "-c",
               "mount -t tmpfs none / 2>&1; echo m=$?; "
               "ls /proc/1/root/ | grep -c work; "
               "echo 1 > /proc/sysrq-trigger 2>&1; echo s=$?")
    assert "m=0" not in out.stdout
    assert "s=0" not in out.stdout
    # /proc/1/root is the container's own root: no host /work there
    assert out.stdout.split("\n")[-3 if out.stdout.endswith("\n") else -2].strip() in ("0",)


def test_env_workdir_entrypoint(bb, tmp_path):
    envf = tmp_path / "env"
    envf.write_text("# comment\nFROMFILE=yes\n")
    out = prun("run", "--rm", "-e", "A=1", "--env-file", str(envf), "-w", "/srv",
               "--entrypoint", "/bin/sh", "--rootfs", bb, "-c", "echo $A $FROMFILE $PATH; pwd")
    assert out.stdout.split("\n")[:2] == [
        "1 yes /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "/srv"]


def test_stdin_only_with_interactive(bb):
    assert prun("run", "--rm", "-i", "--rootfs", bb, "cat", input="typed\n").stdout == "typed\n"
    assert prun("run", "--rm", "--rootfs", bb, "cat", input="typed\n").stdout == ""


def test_network_none_has_loopback_only(bb):
    out = prun("run", "--rm", "--network", "none", "--rootfs", bb, "sh", "-c",
               "ls /sys/class/net; cat /sys/class/net/lo/operstate")
    assert out.stdout.split() == ["lo", "unknown"]
