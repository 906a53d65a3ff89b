"""Type aliases shared by the modules; imported only while type checking."""

from __future__ import annotations

import os
from typing import Protocol, TypeAlias


class HasFileno(Protocol):
    """An object that owns a file descriptor: a socket, a file, a server."""

    def fileno(self) -> int:
        """Return the underlying file descriptor."""
        ...


FdLike: TypeAlias = "int | HasFileno"
PathLike: TypeAlias = "str | os.PathLike[str]"
