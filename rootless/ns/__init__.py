"""Namespaces and the container init: syscalls, mount plan and executor, caps, seccomp, users."""
