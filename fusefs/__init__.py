"""fusefs: prun's FUSE copy-on-write union filesystem.

Only ``fusefs/ops.py`` imports fusepy; the union logic is pure Python over a
small Layer interface so it can be tested without a kernel mount.
"""

# The libfuse the adapter is written against (3.x ABI, Debian's libfuse3-3).
LIBFUSE = "libfuse3.so.3"
