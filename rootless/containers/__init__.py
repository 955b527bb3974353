"""Detached containers: store, keeper, logs, control socket, lifecycle."""
