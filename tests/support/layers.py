"""Layer directories for union filesystem tests, from a nested dict.

``build_layer(root, {"f": "text", "d": {...}, "l": ("link", "target")})``
writes files, directories and symlinks under ``root`` and returns it.
"""

from __future__ import annotations

import os
from pathlib import Path


def build_layer(root: Path, tree: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, value in tree.items():
        p = root / name
        if isinstance(value, dict):
            build_layer(p, value)
        elif isinstance(value, tuple):
            os.symlink(value[1], p)
        else:
            p.write_text(value)
    return root
