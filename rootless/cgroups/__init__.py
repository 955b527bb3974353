"""cgroup v2 resource limits: flags, the hierarchy, systemd scopes, the manager choice."""
