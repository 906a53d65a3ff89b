"""The version of daemondeco, in a module of its own so that the CLI can print it.

``daemondeco.__version__`` re-exports it; ``--version`` reads it here
without climbing up into the package's ``__init__``; setup.cfg reads this
file statically.
"""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
