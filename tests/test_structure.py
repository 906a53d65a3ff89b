"""The package's structure is its contract: checked from the source, as a reader would see it.

* The modules import one another in one straight stack: no circle, so no
  import runs back up (type-only and lazy imports count as arrows too).
* Every private module's ``__all__`` lists exactly what its neighbours
  import from it, and nothing else; no module imports a sibling's
  underscore name or reaches into another module's private attributes.
* Every module's docstring names its concern.
* A class that subclasses a class of a sibling module runs its parent's
  constructor (a relay that skips it silently misses every field the parent
  gains); only ``_state`` writes a key of the state file.
* The public subpackage ``daemondeco.compat`` keeps the same rules: its
  modules (named ``compat.<module>``) count as neighbours of the package's
  private modules, and its own private modules have an ``__all__`` contract.
* Public classes report ``__module__ == "daemondeco"``.
* Where ``fork``/``flock`` are missing, every public entry point raises
  ``DaemonError``, never ``AttributeError``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest
from conftest import ROOT, Sandbox

import daemondeco

PACKAGE = ROOT / "daemondeco"
SUBPACKAGES = ("compat",)  # public subpackages, whose modules are named "compat.<module>" here
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py")) + sorted(
    f"{sub}.{path.stem}" for sub in SUBPACKAGES for path in (PACKAGE / sub).glob("*.py")
)


def _tree(module: str) -> ast.Module:
    relative = module.replace(".", "/") + ".py"
    return ast.parse((PACKAGE / relative).read_text(), filename=f"daemondeco/{relative}")


def _sibling_imports(module: str) -> Iterator[tuple[str, list[str], int]]:
    """(sibling, names imported from it, line) for every relative import, wherever it stands."""
    package = module.rpartition(".")[0]  # "" for the package's own modules, "compat" in the subpackage
    for node in ast.walk(_tree(module)):
        if not isinstance(node, ast.ImportFrom) or node.level not in (1, 2) or (node.level == 2 and not package):
            continue
        prefix = f"{package}." if package and node.level == 1 else ""
        names = [alias.name for alias in node.names]
        if node.module is None:  # from . import _proc, _signals / from .. import DaemonError
            for name in names:
                if prefix + name in MODULES:
                    yield prefix + name, [], node.lineno
                else:
                    yield prefix + "__init__", [name], node.lineno
        else:
            yield prefix + node.module, names, node.lineno


def _graph() -> dict[str, set[str]]:
    return {module: {sibling for sibling, _, _ in _sibling_imports(module)} for module in MODULES}


def test_the_imports_form_no_circle() -> None:
    graph = _graph()
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import circle: " + " -> ".join([*path, module])
        state[module] = "open"
        for sibling in sorted(graph[module]):
            visit(sibling, [*path, module])
        state[module] = "done"
        order.append(module)

    for module in MODULES:
        visit(module, [])
    # A topological order exists: reading bottom-up, every arrow points down.
    position = {module: index for index, module in enumerate(order)}
    for module, siblings in graph.items():
        for sibling in siblings:
            assert position[sibling] < position[module], f"{module} imports {sibling}, which imports it back"


def test_the_cli_never_climbs_up_into_the_decorators() -> None:
    assert "_decorators" not in _graph()["_cli"], "the CLI takes options and a function, never the wrapper"


def _imported_from(module: str) -> dict[str, set[str]]:
    """What every other module takes from *module*: names it imports, or attributes of the module it imports."""
    taken: dict[str, set[str]] = {}
    for other in MODULES:
        for sibling, names, _ in _sibling_imports(other):
            if sibling != module:
                continue
            if names:
                taken.setdefault(other, set()).update(names)
            else:  # from . import _proc, then _proc.terminate(...)
                attributes = {
                    node.attr
                    for node in ast.walk(_tree(other))
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == module
                }
                taken.setdefault(other, set()).update(attributes)
    return taken


def _declared_all(module: str) -> list[str]:
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    return []


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


PRIVATE = [
    module
    for module in MODULES
    if module.rpartition(".")[2].startswith("_") and module.rpartition(".")[2] not in ("__init__", "__main__")
]


@pytest.mark.parametrize("module", PRIVATE)
def test_all_of_a_private_module_is_exactly_what_its_neighbours_import(module: str) -> None:
    declared = _declared_all(module)
    order = sorted(declared, key=_isort_key)
    assert declared == order, f"{module}.__all__ is not sorted (CONSTANTS, Classes, functions)"
    used = set().union(*_imported_from(module).values()) if _imported_from(module) else set()
    assert set(declared) == used, (
        f"{module}.__all__ must list what its neighbours import: "
        f"listed but unused {sorted(set(declared) - used)}, imported but unlisted {sorted(used - set(declared))}"
    )


@pytest.mark.parametrize("module", MODULES)
def test_no_module_imports_a_private_name_of_a_sibling(module: str) -> None:
    for sibling, names, line in _sibling_imports(module):
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        assert not private, f"daemondeco/{module}.py:{line} imports {private} from {sibling}"


# Attribute reaches into private names that are allowed, each for a reason.
ALLOWED_PRIVATE_ATTRIBUTES = {
    "os._exit",  # leaving a forked process without running the parent's atexit handlers
    "sys._getframe",  # the warnings stacklevel of the user's line
    "atexit._clear",  # a worker does not run its caller's exit handlers
    "atexit._run_exitfuncs",  # the daemon's own exit sequence, without the interpreter's teardown
    "logging._handlerList",  # the fds of every configured logging handler are kept
    "owner._self_daemon_options",  # wrapt's attribute prefix for the wrapper's own state, in _decorators
    "process._start_time",  # a DaemonProcess classmethod on its own instance
    # _mpstate: multiprocessing's per-process state, which the detach invalidated (docs/internals.md)
    "forkserver._forkserver",  # the launcher's forkserver: forgotten, the daemon starts its own
    "process._current_process",  # the launcher's tempdir and daemonic flag are dropped from its config
    "util._exit_function",  # registered again in a worker, whose caller's atexit handlers were cleared
    "util._finalizer_registry",  # the launcher's finalizers (a pool's terminate) are not the daemon's
    "util._run_after_forkers",  # what a child forked by multiprocessing itself runs first
}
_REACH = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\.(_[a-z][A-Za-z0-9_]*)")


@pytest.mark.parametrize("module", MODULES)
def test_no_module_reaches_into_another_ones_private_attributes(module: str) -> None:
    source = (PACKAGE / (module.replace(".", "/") + ".py")).read_text()
    reaches = {f"{owner}.{name}" for owner, name in _REACH.findall(source) if owner not in ("self", "cls")}
    unexpected = reaches - ALLOWED_PRIVATE_ATTRIBUTES
    assert not unexpected, f"daemondeco/{module}.py reaches into private attributes: {sorted(unexpected)}"


@pytest.mark.parametrize("module", MODULES)
def test_every_module_says_its_concern(module: str) -> None:
    docstring = ast.get_docstring(_tree(module))
    assert docstring, f"daemondeco/{module}.py has no docstring"
    assert len(docstring.splitlines()[0]) > 15, f"daemondeco/{module}.py: the first line should name its concern"


def _sibling_names(module: str) -> set[str]:
    """The names *module* imports from its siblings (type-only and lazy imports included)."""
    return {name for _, names, _ in _sibling_imports(module) for name in names}


def _calls_parent_init(init: ast.FunctionDef) -> bool:
    """Whether a constructor calls ``super().__init__(...)`` or ``Base.__init__(self, ...)``."""
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
        for node in ast.walk(init)
    )


@pytest.mark.parametrize("module", MODULES)
def test_a_subclass_of_a_sibling_module_s_class_runs_its_parent_s_constructor(module: str) -> None:
    imported = _sibling_names(module)
    for node in ast.walk(_tree(module)):
        if not isinstance(node, ast.ClassDef):
            continue
        parents = [base.id for base in node.bases if isinstance(base, ast.Name) and base.id in imported]
        parents = [name for name in parents if name[:1].isupper() and name not in ("Protocol", "Exception")]
        if not parents:
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                assert _calls_parent_init(item), (
                    f"daemondeco/{module}.py:{item.lineno}: {node.name}.__init__ skips the constructor of {parents}, "
                    "another module's class: a field added there would be missing here. "
                    "Implement the Protocol the code needs (a second implementation) instead of subclassing."
                )


def _writes_state_keys(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for every state-file key written by name: ``<...>state.update(key=...)``,
    ``<...>.fields[...] = ...``, ``<...>.fields.update(...)`` and ``record(key=...)``/``_record(key=...)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, method = node.func.value, node.func.attr
            owner_name = (
                owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""
            )
            keywords = [k.arg for k in node.keywords if k.arg is not None]
            if method == "update" and owner_name == "state" and keywords:
                yield node.lineno, f"state.update({', '.join(keywords)}=...)"
            elif method == "update" and owner_name == "fields":
                yield node.lineno, "fields.update(...)"
            elif method in ("record", "_record") and keywords:
                yield node.lineno, f"{method}({', '.join(keywords)}=...)"
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Attribute)
                    and target.value.attr == "fields"
                ):
                    yield node.lineno, "fields[...] = ..."


@pytest.mark.parametrize("module", [module for module in MODULES if module != "_state"])
def test_only_the_state_module_writes_a_key_of_the_state_file(module: str) -> None:
    writes = [f"line {line}: {what}" for line, what in _writes_state_keys(_tree(module))]
    assert not writes, (
        f"daemondeco/{module}.py writes state-file keys itself ({'; '.join(writes)}): "
        "add a named writer to daemondeco/_state.py and record what it returns"
    )


def _assigned_runtime_attributes(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, target) for every assignment to an attribute of a runtime object: ``runtime.X = ...``,
    ``self.runtime.X = ...``, ``self._runtime.X += ...``, ``runtime.X, y = ...``, ``del runtime.X``."""

    def is_runtime(node: ast.expr) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        return name.lstrip("_") == "runtime"

    def flatten(target: ast.expr) -> Iterator[ast.expr]:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                yield from flatten(element)
        elif isinstance(target, ast.Starred):
            yield from flatten(target.value)
        else:
            yield target

    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for leaf in flatten(target):
                if isinstance(leaf, ast.Attribute) and is_runtime(leaf.value):
                    yield node.lineno, ast.unparse(leaf)


@pytest.mark.parametrize("module", [module for module in MODULES if module not in ("_runtime", "_daemon")])
def test_only_the_runtime_and_the_daemon_modules_assign_a_runtime_attribute(module: str) -> None:
    assigned = [f"line {line}: {what} = ..." for line, what in _assigned_runtime_attributes(_tree(module))]
    assert not assigned, (
        f"daemondeco/{module}.py assigns attributes of a Runtime from outside ({'; '.join(assigned)}): "
        "give Runtime (daemondeco/_runtime.py) a named method that does it and call that"
    )


@pytest.mark.parametrize("name", [name for name in daemondeco.__all__ if isinstance(getattr(daemondeco, name), type)])
def test_public_classes_report_the_public_module(name: str) -> None:
    assert getattr(daemondeco, name).__module__ == "daemondeco"


def test_a_startup_error_traceback_names_the_public_module(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        from daemondeco import daemon

        @daemon(ready="notify", ready_timeout=5)
        def main():
            raise ValueError("bad config")

        main()
        """
    )
    assert result.returncode == 1, result
    assert "daemondeco.StartupError: daemon (pid" in result.stderr, result
    assert "daemondeco._errors" not in result.stderr, result


# -- a platform without fork() and flock() -----------------------------------------

NO_POSIX = """
import os, sys
sys.modules["fcntl"] = None  # import fcntl -> ImportError, as on Windows
del os.fork
import daemondeco
from daemondeco import DaemonError, Pidfile, daemon, daemonize, process_daemonize
from daemondeco.testing import DaemonRunner

HERE = os.path.dirname(os.path.abspath(__file__))
PIDFILE = os.path.join(HERE, "d.pid")

@daemon(pidfile=PIDFILE)
def main():
    pass

@process_daemonize
def work():
    pass

calls = {
    "daemon()": main,
    "daemon.start()": main.start,
    "daemon.run()": main.run,
    "daemon.status()": main.status,
    "daemon.stop()": main.stop,
    "daemon.restart()": main.restart,
    "process_daemonize()": work,
    "daemonize()": lambda: daemonize(pidfile=PIDFILE),
    "Pidfile.acquire()": lambda: Pidfile(PIDFILE).acquire(),
    "Pidfile.read_pid()": lambda: Pidfile(PIDFILE).read_pid(),
    "Pidfile.locked_by()": lambda: Pidfile(PIDFILE).locked_by(),
    "Pidfile.is_locked()": lambda: Pidfile(PIDFILE).is_locked(),
    "DaemonRunner.start()": lambda: DaemonRunner(main, directory=HERE).start(),
}
open(PIDFILE, "w").write("1\\n")  # so that readers get as far as the lock
for name, call in calls.items():
    try:
        call()
    except DaemonError as exc:
        print("DaemonError", name, exc)
    except BaseException as exc:
        print("WRONG", name, type(exc).__name__, exc)
    else:
        print("WRONG", name, "no error")
print("cli status ->", main.cli(["status"]))
"""


def test_without_fork_and_flock_every_entry_point_raises_daemon_error(sandbox: Sandbox) -> None:
    result = sandbox.run(NO_POSIX)
    assert result.returncode == 0, result
    assert "WRONG" not in result.stdout, result
    assert result.stdout.count("DaemonError") == 13, result
    assert "needs a POSIX system with fork() and flock()" in result.stdout, result
    assert "cli status -> 4" in result.stdout, result


def _typed_keys(class_name: str) -> set[str]:
    return {
        node.target.id
        for node in next(n for n in _tree("_types").body if isinstance(n, ast.ClassDef) and n.name == class_name).body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def test_the_typed_options_are_exactly_the_accepted_options() -> None:
    """``_types.DaemonOptions`` (what type checkers see) and ``Options.build`` (what runs) never drift.

    ``daemonize()`` takes ``DaemonizeOptions``; ``@daemon`` those and ``restart``
    (``DaemonOptions``); ``@process_daemonize`` those and ``instances``, a
    keyword of its overloads (``instances=N`` gives a ``WorkerGroup``).
    """
    from daemondeco._options import Options

    daemonize, daemon = _typed_keys("DaemonizeOptions"), _typed_keys("DaemonOptions")
    assert daemon == {"restart"}, "DaemonOptions adds restart= to DaemonizeOptions, and nothing else"
    assert not daemonize & {"restart", "instances"}, "daemonize() refuses them at run time: the types too"
    assert daemonize | daemon | {"instances"} == set(Options.__slots__) - {"caller"}


def test_the_literal_types_cover_the_accepted_values() -> None:
    """``ready=`` and ``restart=`` as ``Literal`` types: exactly the values ``Options.build`` accepts."""
    from daemondeco._options import READY_MODES, RESTART_MODES

    aliases = {
        node.target.id: set(re.findall(r'"([^"]+)"', node.value.value))
        for node in _tree("_types").body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(node.value, ast.Constant)
        and str(node.value.value).startswith("Literal[")
    }
    assert set(READY_MODES) == aliases["ReadyMode"], aliases
    assert set(RESTART_MODES) == aliases["RestartMode"], aliases
