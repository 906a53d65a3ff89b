"""Type aliases shared by the modules; imported only while type checking."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

__all__ = ["FdLike", "Handler", "PathLike"]


class HasFileno(Protocol):
    """An object that owns a file descriptor: a socket, a file, a server."""

    def fileno(self) -> int:
        """Return the underlying file descriptor."""
        ...


FdLike: TypeAlias = "int | HasFileno"
PathLike: TypeAlias = "str | os.PathLike[str]"
Handler: TypeAlias = "Callable[[int, Any], object] | int | None"
