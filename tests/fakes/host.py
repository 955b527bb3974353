"""An in-memory Host for rootless.preflight: a healthy systemd + cgroup v2
laptop for user alice (uid 1000) unless told otherwise."""

from __future__ import annotations

import os
import stat

USER_SERVICE = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"


class FakeHost:
    def __init__(self, *, files=None, unopenable=None, tools=None, modes=None, libraries=None,
                 unshare_error=None, env=None, fs_type=0xEF53, mount_opts=None):
        self.files = {
            "/proc/sys/user/max_user_namespaces": "63000\n",
            "/etc/subuid": "alice:100000:65536\n",
            "/etc/subgid": "alice:100000:65536\n",
            "/proc/self/mountinfo": "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "/proc/self/cgroup": "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n",
            f"{USER_SERVICE}/cgroup.controllers": "cpuset cpu io memory pids\n",
            **(files or {}),
        }
        self.unopenable = unopenable or {}
        self.tools = {"newuidmap", "newgidmap", "slirp4netns"} if tools is None else tools
        self.modes = {"/usr/bin/newuidmap": stat.S_IFREG | stat.S_ISUID | 0o755,
                      "/usr/bin/newgidmap": stat.S_IFREG | stat.S_ISUID | 0o755,
                      f"{USER_SERVICE}": stat.S_IFDIR | 0o755,
                      "/run/user/1000": stat.S_IFDIR | 0o700,
                      "/run/user/1000/bus": stat.S_IFSOCK | 0o666,
                      **(modes or {})}
        self.libraries = {"fuse3"} if libraries is None else libraries
        self.unshare_error = unshare_error
        self.env = {"PATH": "/usr/bin", "XDG_RUNTIME_DIR": "/run/user/1000",
                    "HOME": "/home/alice"} if env is None else env
        self._fs_type = fs_type
        self._mount_opts = mount_opts or {"rw", "relatime"}

    def uid(self) -> int:
        return 1000

    def username(self) -> str:
        return "alice"

    def read(self, path):
        return self.files.get(path)

    def which(self, name):
        return f"/usr/bin/{name}" if name in self.tools else None

    def stat(self, path):
        mode = self.modes.get(path)
        if mode is None:
            return None
        owner = 0 if path.startswith("/usr/") else 1000
        return os.stat_result((mode, 0, 0, 1, owner, owner, 0, 0, 0, 0))

    def has_file_caps(self, path):
        return False

    def open_rw(self, path):
        return self.unopenable.get(path)

    def load_library(self, name):
        return f"lib{name}.so.2" if name in self.libraries else None

    def run(self, argv):
        if argv[-1] == "--version":
            return 0, "slirp4netns version 1.2.0\n"
        return 0, "--enable-sandbox --enable-seccomp --api-socket --exit-fd --ready-fd"

    def can_unshare_user(self):
        return self.unshare_error

    def fs_type(self, path):
        return self._fs_type

    def mount_options(self, path):
        return self._mount_opts
