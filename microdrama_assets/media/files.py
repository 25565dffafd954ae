"""File helpers shared by the media and storage code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the filesystem allows one (artifacts are replaced whole, never modified in place, so
    sharing the bytes is safe), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
