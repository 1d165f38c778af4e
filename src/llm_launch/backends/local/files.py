"""Files the local backend writes (logs, group records) are private to the server's user.

Logs hold prompts and engine output of one owner; records hold PIDs and ports. Folders
are created 0700 and files 0600 whatever the umask (the server also sets umask 077 at
start, which covers what the spawned programs create, such as staged weights).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) 0700; an existing folder is left as it is."""
    if not path.is_dir():
        if not path.parent.is_dir():
            private_dir(path.parent)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def open_private(path: Path, append: bool = True) -> BinaryIO:
    """Open `path` for writing (appending by default), creating it 0600."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, FILE_MODE), "ab" if append else "wb")


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text` (a crash never leaves half a file)."""
    temporary = path.with_suffix(".tmp")
    with open_private(temporary, append=False) as out:
        out.write(text.encode())
    temporary.replace(path)
