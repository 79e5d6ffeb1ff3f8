"""Run the optvis cells of Lucid's published notebooks on lucid-ifv's compat layer.

Lucid's notebooks (the ``notebooks/`` folder of github.com/tensorflow/lucid) are the
reference for the compat layer (`lucid_ifv.compat`). This script runs their code cells,
unchanged except for the prefix swap ``lucid.`` -> ``lucid_ifv.compat.`` in import statements,
against a local InceptionV1-structured graph, and writes a report of which cells run::

    python experiments/lucid_notebooks.py --notebooks ~/src/lucid/notebooks \\
        --out docs/lucid-notebooks.md --max-steps 4

It is not run in CI (CI has no copy of Lucid's notebooks); ``tests/test_lucid_notebooks_runner.py``
tests the classifier, the source transform and the runner on small synthetic notebooks.

Per notebook (each in its own Python process, cells in order in one namespace):

1. Every code cell is transformed (see `transform`): installation lines (``!pip install``,
   ``!npm install``, ``!imageio_download_bin``), environment pins (``%tensorflow_version``,
   ``assert tf.__version__.startswith('1')``) and IPython set-up magics that do nothing in a
   script (``%load_ext``, ``%autoreload``, ``%matplotlib``, ``%config``) are
   removed; imports of ``lucid`` get the prefix ``lucid_ifv.compat``.
2. Every code cell is classified (see `classify`; the rules are printed in the report):
   ``empty`` (comments only), ``shell/magic``, ``not Python 3`` (does not parse),
   ``TF1 session``, ``environment`` (needs something not available offline), else
   ``optvis`` -- the cells that need no TF1 session, which the acceptance criterion counts.
3. ``optvis`` cells are executed. Skipped cells are not, except their top-level import
   statements (imports have no session semantics; without them every later cell would fail
   for want of ``np``). A failing optvis cell is classified by its exception: a NameError
   for a name bound only by a skipped or failed earlier cell is a *dependency* failure
   (listed separately), as is an AttributeError for a Svelte component
   (``lucid_svelte.Name``) defined only by a skipped ``%%html_define_svelte Name`` cell; a blocked network access, a missing third-party module or a missing
   data file named by the notebook makes it an ``environment`` cell (found at run time).

What is replaced: the model download only. ``modelzoo.vision.InceptionV1.model_path`` (the
class attribute) points at a local ``.pb`` built by ``tests/fake_inception.py`` at
InceptionV1's full channel counts and 224x224 input, written in Lucid's format (a frozen
GraphDef with Lucid's ``lucid_metadata_json`` node); its weights are random. Nothing else is
patched: the network is blocked (sockets to hosts other than loopback fail), real Lucid
cannot be imported, ``show`` writes PNGs into a temporary folder (``$LUCID_IFV_SHOW_DIR``)
and every cell runs in a temporary working directory.

``--max-steps N`` caps the optimisation of every ``render_vis`` call (a wrapper around
``lucid_ifv.compat.optvis.render.render_vis`` installed by the runner; the library is not
changed): thresholds above ``N - 1`` are lowered, keeping their number and order, so each call
runs ``max(N, number of thresholds)`` steps at most and returns as many snapshots as asked.
The question answered is whether cells run and mean the same, not image quality.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import datetime
import importlib
import importlib.abc
import importlib.util
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tokenize
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EMPTY = "empty"
MAGIC = "shell/magic"
NOT_PY3 = "not Python 3"
SESSION = "TF1 session"
TF1_API = "TF1 API"
ENV = "environment"
OPTVIS = "optvis"
CATEGORIES = (OPTVIS, SESSION, TF1_API, ENV, NOT_PY3, MAGIC, EMPTY)

RAN = "ran"
FAILED = "failed"
DEPENDENCY = "dependency"
SKIPPED = "skipped"

# -- the source transform -----------------------------------------------------------------------

#: Lines removed from every cell (replaced by ``pass`` at their indentation, so blocks stay
#: valid): installation commands, environment pins, IPython set-up magics that do nothing
#: outside IPython.
STRIPPED_LINES = (
    ("installation", re.compile(r"^\s*!\s*(pip3?|python3? -m pip)\b.*\binstall\b")),
    ("installation", re.compile(r"^\s*!\s*(npm\s+install|imageio_download_bin|apt(-get)?\s+install)\b")),
    ("TF1 pin", re.compile(r"^\s*%tensorflow_version\b")),
    ("TF1 pin", re.compile(r"""^\s*assert\s+tf\.__version__\.startswith\(\s*(['"])1\.?\1\s*\)\s*(#.*)?$""")),
    ("IPython set-up", re.compile(r"^\s*%(load_ext|reload_ext|autoreload|matplotlib|config)\b")),
)
_CELL_MAGIC = re.compile(r"^\s*%%")
#: Lucid's ``%%html_define_svelte Name`` cell magic binds ``Name`` in ``lucid.scratch.web.svelte``.
SVELTE_MAGIC = re.compile(r"\s*%%html_define_svelte\s+([A-Za-z_]\w*)")
_LINE_MAGIC = re.compile(r"^\s*[!%]|^\s*[A-Za-z_]\w*(\s*,\s*[A-Za-z_]\w*)*\s*=\s*[!%]"
                         # IPython automagic shell aliases: ``ls -lh``, ``cd ..``
                         r"|^\s*(ls|cd|pwd|cat|cp|mv|rm|mkdir|rmdir|less|more|man)(\s+[-/.~\w*][^=(]*)?\s*$")
PREFIX, NEW_PREFIX = "lucid", "lucid_ifv.compat"


@dataclass
class Transformed:
    source: str  # executable source (the prefix swapped); magic lines replaced by ``pass``
    stripped: list = field(default_factory=list)  # (kind, line) removed by STRIPPED_LINES
    magic: list = field(default_factory=list)  # shell / magic lines that remain (not Python)
    swapped: int = 0  # import statements whose prefix was swapped
    syntax_error: str | None = None


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _swap_module(name: str | None) -> str | None:
    if name == PREFIX:
        return NEW_PREFIX
    if name and name.startswith(PREFIX + "."):
        return NEW_PREFIX + name[len(PREFIX):]
    return name


def _swap_import(node: ast.stmt) -> str | None:
    """The prefix-swapped text of an import statement, or None if it imports no ``lucid``."""
    if isinstance(node, ast.ImportFrom):
        if node.level or _swap_module(node.module) == node.module:
            return None
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        return f"from {_swap_module(node.module)} import {names}"
    if isinstance(node, ast.Import):
        if not any(_swap_module(a.name) != a.name for a in node.names):
            return None
        parts = []
        for a in node.names:
            new = _swap_module(a.name)
            if new == a.name:
                parts.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            elif a.asname:
                parts.append(f"import {new} as {a.asname}")
            elif a.name == PREFIX:
                parts.append(f"import {NEW_PREFIX} as {PREFIX}")
            else:  # ``import lucid.a.b`` binds ``lucid``: keep that name bound
                parts.append(f"import {new}; import {NEW_PREFIX} as {PREFIX}")
        return "; ".join(parts)
    return None


def swap_prefix(source: str) -> tuple[str, int]:
    """``lucid.`` -> ``lucid_ifv.compat.`` in the import statements of `source` (which must
    parse); other code is untouched. Returns the new source and the number of swaps."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            new = _swap_import(node)
            if new is not None:
                edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, new))
    for lineno, col, end_lineno, end_col, new in sorted(edits, reverse=True):
        first, last = lines[lineno - 1], lines[end_lineno - 1]
        lines[lineno - 1: end_lineno] = [first[:col] + new + last[end_col:]]
    return "".join(lines), len(edits)


def transform(source: str) -> Transformed:
    """Strip installation/pin/set-up lines, blank out remaining magics, swap the prefix."""
    out, stripped, magic = [], [], []
    lines = source.splitlines()
    for i, line in enumerate(lines):
        if _CELL_MAGIC.match(line):  # a cell magic: the rest of the cell is not Python
            magic.extend(lines[i:])
            break
        kind = next((k for k, pattern in STRIPPED_LINES if pattern.match(line)), None)
        if kind is not None:
            stripped.append((kind, line.strip()))
            out.append(_indent(line) + "pass")
        elif _LINE_MAGIC.match(line):
            magic.append(line.strip())
            out.append(_indent(line) + "pass")
        else:
            out.append(line)
    text = "\n".join(out) + "\n"
    result = Transformed(text, stripped, magic)
    try:
        result.source, result.swapped = swap_prefix(text)
    except SyntaxError as e:
        result.syntax_error = f"{e.msg} (line {e.lineno})"
    return result


# -- classification -------------------------------------------------------------------------------

#: A cell is "TF1 session" if its code (comments removed) matches one of these. Defining a
#: function that opens a session counts: calling it needs one.
SESSION_RULES = (
    ("tf.Session / tf.InteractiveSession", r"\btf\.(compat\.v1\.)?(Session|InteractiveSession)\b"),
    ("create_session()", r"\bcreate_session\s*\("),
    ("a session object `sess`", r"\bsess\b"),
    ("Tensor.eval() / Operation.run()", r"\.(eval|run)\s*\("),
    ("tf.placeholder", r"\btf\.(compat\.v1\.)?placeholder(_with_default)?\b"),
    ("variable initializers", r"\b(global_variables_initializer|initialize_all_variables|local_variables_initializer)\b"),
    ("graph collections", (r"\btf\.(get_collection|GraphKeys|add_to_collection|losses\.add_loss|"
                           r"losses\.get_total_loss)\b|\.get_collection\s*\(")),
    ("explicit graphs", (r"\btf\.Graph\s*\(|\.as_default\s*\(|\btf\.(reset_default_graph|get_default_graph|"
                         r"import_graph_def|GraphDef)\b")),
    ("tf.contrib / slim", r"\b(tf|tensorflow)\.contrib\b|\bslim\b"),
    ("TF1 training state", (r"\btf\.train\.(get_or_create_global_step|get_global_step|Coordinator|"
                            r"start_queue_runners|Saver)\b")),
    ("optimizer.minimize() (a train op)", r"\.minimize\s*\("),
)
_SESSION_RES = tuple((label, re.compile(pattern)) for label, pattern in SESSION_RULES)

#: Calls that read their argument from the network when it is a URL.
_URL = re.compile(r"^(https?|gs)://")
#: Colab-only or display-only things (besides imports of modules that are not installed).
ENV_RULES = (
    ("Colab file upload/download/drive", r"\bfiles\.(upload|download)\s*\(|\bdrive\.mount\s*\("),
    ("video writing (moviepy/ffmpeg)", r"\bFFMPEG_VideoWriter\b|\bmoviepy\b"),
)
_ENV_RES = tuple((label, re.compile(pattern)) for label, pattern in ENV_RULES)


def tf1_only_names(tree: ast.AST) -> list:
    """``tf.a.b`` attribute chains in `tree` that TensorFlow 2 does not have (TF1 API such as
    ``tf.train.AdamOptimizer`` or ``tf.image.resize_images``): the cell needs a TF2 edit
    (``tf.compat.v1....``) whatever library it uses."""
    import tensorflow as tf

    missing = set()
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id == "tf" and chain):
            continue
        target = tf
        for depth, attr in enumerate(reversed(chain)):
            if not hasattr(target, attr):
                missing.add("tf." + ".".join(list(reversed(chain))[:depth + 1]))
                break
            target = getattr(target, attr)
    return sorted(missing)


def code_without_comments(source: str) -> str:
    """`source` with comments removed (tokenize; falls back to the text when it cannot)."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.COMMENT]
        return tokenize.untokenize(tokens)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.split("#", 1)[0] for line in source.splitlines())


def _module_available(name: str) -> bool:
    if name == "__future__" or name.split(".")[0] in (PREFIX, "lucid_ifv"):
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(tree: ast.AST):
    """(module, bound name) for every import in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, a.asname or a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                yield node.module, a.asname or a.name


def bound_names(tree: ast.AST) -> set:
    """Names a cell binds at module level (assignments, defs, classes, imports, loop and
    ``with`` targets), not looking into function or class bodies."""
    names: set = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                for d in child.decorator_list:
                    visit(d)
                continue
            if isinstance(child, ast.Lambda):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for a in child.names:
                    if a.name != "*":
                        names.add(a.asname or a.name.split(".")[0])
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.add(child.id)
            visit(child)

    visit(tree)
    return names


def loaded_names(tree: ast.AST) -> set:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _url_args(tree: ast.AST, url_names: set) -> list:
    """URL literals (or names bound to URL literals) passed as call arguments."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _URL.match(arg.value):
                found.append(arg.value)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant) \
                    and _URL.match(str(arg.values[0].value)):
                found.append(str(arg.values[0].value) + "...")
            elif isinstance(arg, ast.Name) and arg.id in url_names:
                found.append(arg.id)
    return found


_LOADERS = {"load", "read", "urlopen", "urlretrieve", "load_joblib"}


def _url_literals(tree: ast.AST) -> list:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and _URL.match(n.value)]


def _calls_loader(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in _LOADERS:
                return True
    return False


def url_bindings(tree: ast.AST) -> set:
    """Module-level names assigned a URL literal or a list/tuple of them."""
    names = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign):
            value = node.value
            items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            if items and all(isinstance(v, ast.Constant) and isinstance(v.value, str) and _URL.match(v.value)
                             for v in items):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@dataclass
class Cell:
    index: int  # position in the notebook's cell list (markdown included), from 0
    source: str  # as in the notebook
    first_line: str
    transformed: Transformed | None = None
    category: str = OPTVIS
    reason: str = ""
    status: str = SKIPPED
    error: str = ""
    where: str = ""
    renders: list = field(default_factory=list)  # [requested thresholds, used thresholds] per render_vis call
    imports_failed: list = field(default_factory=list)  # of a skipped cell, its imports that failed
    seconds: float = 0.0
    output_tail: str = ""


def _first_line(source: str) -> str:
    """The cell's first line of code: not blank, a comment or a removed (installation, pin,
    set-up) line, when there is one."""
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith("#") and not any(pattern.match(line) for _, pattern in STRIPPED_LINES):
            return line
    return lines[0] if lines else ""


def classify(cells: list[Cell]) -> None:
    """Set ``category`` and ``reason`` of each cell (in notebook order: imports of modules
    that are not installed make later uses of their names "environment")."""
    unavailable: dict = {}  # name -> module not installed here
    url_names: set = set()
    for cell in cells:
        t = cell.transformed = transform(cell.source)
        if t.magic:
            cell.category, cell.reason = MAGIC, f"shell/magic line: {t.magic[0][:60]}"
            continue
        if t.syntax_error:
            cell.category, cell.reason = NOT_PY3, t.syntax_error
            continue
        tree = ast.parse(t.source)
        body = [n for n in tree.body if not isinstance(n, ast.Pass)]
        if not body:
            cell.category = MAGIC if t.stripped else EMPTY
            cell.reason = f"only {', '.join(sorted({k for k, _ in t.stripped}))} lines" if t.stripped else "no code"
            continue
        code = code_without_comments(t.source)
        session = [label for label, pattern in _SESSION_RES if pattern.search(code)]
        missing = sorted({m for m, _ in _imports(tree) if not _module_available(m)})
        for module, name in _imports(tree):
            if module in missing:
                unavailable[name] = module
            else:
                unavailable.pop(name, None)
        url_names |= url_bindings(tree)
        if session:
            cell.category, cell.reason = SESSION, "; ".join(session)
            continue
        tf1 = tf1_only_names(tree)
        if tf1:
            cell.category, cell.reason = TF1_API, "uses " + ", ".join(tf1) + " (not in TensorFlow 2)"
            continue
        env = []
        if missing:
            env.append("imports modules not installed: " + ", ".join(missing))
        uses = sorted(n for n in loaded_names(tree) - bound_names(tree) if n in unavailable)
        if uses:
            env.append("uses " + ", ".join(f"`{n}` ({unavailable[n]})" for n in uses))
        env += [label for label, pattern in _ENV_RES if pattern.search(code)]
        urls = _url_args(tree, url_names)
        if not urls and _calls_loader(tree):
            urls = _url_literals(tree)
        if urls:
            env.append("downloads " + ", ".join(u if len(u) < 70 else u[:67] + "..." for u in urls[:2]))
        if env:
            cell.category, cell.reason = ENV, "; ".join(env)
        else:
            cell.category, cell.reason = OPTVIS, ""


# -- running -----------------------------------------------------------------------------------------


class OfflineError(ConnectionRefusedError):
    """Raised for any network access the runner blocks."""


OFFLINE_MARK = "lucid_notebooks: network access blocked"
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


@contextlib.contextmanager
def offline():
    """Block connections to hosts other than loopback (and name lookups of them)."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in _LOOPBACK:
            raise OfflineError(f"{OFFLINE_MARK} ({host})")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host not in (None, *_LOOPBACK):
            raise OfflineError(f"{OFFLINE_MARK} ({host})")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = guarded_connect, guarded_getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo


class _NoRealLucid(importlib.abc.MetaPathFinder):
    """Make ``import lucid`` fail: nothing may silently run on real Lucid."""

    def find_spec(self, name, path=None, target=None):
        if name == PREFIX or name.startswith(PREFIX + "."):
            raise ModuleNotFoundError(f"No module named {name!r} (real Lucid is blocked by the runner)", name=name)


def cap_thresholds(thresholds, max_steps: int):
    """Lucid thresholds (step indices, strictly increasing) capped so that the last one is at
    most ``max(max_steps, len(thresholds)) - 1``, keeping their number and order."""
    try:
        values = [int(t) for t in thresholds]
    except (TypeError, ValueError):
        return thresholds
    if not values or values != sorted(set(values)):
        return thresholds  # the library reports bad thresholds itself
    top = max(max_steps, len(values)) - 1
    out = []
    for i, t in enumerate(values):
        ceiling = top - (len(values) - 1 - i)
        out.append(max(min(t, ceiling), out[-1] + 1 if out else 0))
    return tuple(out)


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float | None):
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum, frame):
        raise _Timeout(f"cell exceeded the {seconds:g} s limit (--cell-timeout)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _chain(error: BaseException):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _where(error: BaseException, label_prefix: str) -> str:
    """The innermost frame in the notebook cell and the innermost frame in lucid-ifv/modelzoo."""
    frames = traceback.extract_tb(error.__traceback__)
    cell = [f for f in frames if f.filename.startswith(label_prefix)]
    lib = [f for f in frames if ("/lucid_ifv/" in f.filename or "/modelzoo/" in f.filename)]
    parts = []
    if cell:
        parts.append(f"cell line {cell[-1].lineno}")
    if lib:
        f = lib[-1]
        parts.append(f"{Path(f.filename).relative_to(ROOT) if f.filename.startswith(str(ROOT)) else f.filename}:{f.lineno}")
    return ", ".join(parts)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _string_literals(cells: list) -> set:
    """Path-like string literals of the notebook's cells (to recognise the files it names)."""
    found = set()
    for cell in cells:
        t = cell.transformed
        if t is None or t.syntax_error:
            continue
        for node in ast.walk(ast.parse(t.source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and 3 < len(node.value) < 300 \
                    and "\n" not in node.value and not _URL.match(node.value) and "." in node.value:
                found.add(node.value)
    return found


def _environment_cause(error: BaseException, literals: set) -> tuple[str, str] | None:
    """(status, why) when `error` is the environment's doing, not lucid-ifv's; else None.
    A missing data file the notebook names is the environment's when it lies outside the
    working directory (Lucid's checkout, the author's machine), else a dependency (a file an
    earlier, skipped cell would have written)."""
    for e in _chain(error):
        if isinstance(e, OfflineError) or OFFLINE_MARK in str(e):
            return SKIPPED, f"network access at run time ({e})"
        if isinstance(e, ModuleNotFoundError) and e.name and \
                e.name.split(".")[0] not in (PREFIX, "lucid_ifv", "modelzoo"):
            return SKIPPED, f"module not installed (at run time): {e.name}"
        if isinstance(e, FileNotFoundError):
            named = [str(e.filename)] if e.filename else []
            named += sorted((lit for lit in literals if lit in str(e)), key=len, reverse=True)
            for literal in named:
                if literal in literals or any(literal.endswith(lit) for lit in literals):
                    if literal.startswith(("..", "/", "~")):
                        return SKIPPED, f"data file outside the working directory is not here: {literal}"
                    return DEPENDENCY, f"data file `{literal}` is not here (an earlier, skipped cell writes it)"
    return None


def _failed_star_imports(tree: ast.AST, namespace: dict, index: int, category: str) -> list:
    """Bindings of unknown names by a skipped/failed cell: ``from m import *`` whose module is
    not imported, ``locals().update(...)`` / ``globals().update(...)``."""
    found = [(index, category, f"from {node.module} import *") for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module and any(a.name == "*" for a in node.names)
             and node.module not in sys.modules]
    found += [(index, category, ast.unparse(node)[:60]) for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
              and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
              and node.func.value.func.id in ("locals", "globals", "vars")]
    return found


def _run_imports(tree: ast.AST, namespace: dict, label: str) -> list:
    """Execute the top-level import statements of a skipped cell; return those that failed."""
    failed = []

    def statements(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.Try):
                yield from statements(node.body)

    for node in statements(tree.body):
        try:
            exec(compile(ast.Module([node], []), label, "exec", dont_inherit=True), namespace)
        except Exception as e:  # noqa: BLE001 (recorded)
            failed.append(f"{ast.unparse(node)[:80]}: {_one_line(e)}")
    return failed


def run_cells(cells: list[Cell], name: str, *, max_steps: int, cell_timeout: float | None = None) -> None:
    """Execute the cells in order in one namespace (see the module doc); sets ``status``,
    ``error``, ``renders`` etc. Patches must be in place (see `patched`)."""
    import lucid_ifv.compat.optvis.render as compat_render

    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    skipped_names: dict = {}  # name -> (cell index, category) of the skipped/failed cell binding it
    star_imports: list = []  # (cell index, category, statement): ``from m import *`` etc. that did not run
    magic_attributes: dict = {}  # component name -> (cell index, category) of a skipped %%html_define_svelte
    literals = _string_literals(cells)
    top_level: set = set()  # every name some cell binds at module level
    for c in cells:
        if c.transformed is not None and not c.transformed.syntax_error:
            top_level |= bound_names(ast.parse(c.transformed.source))
        else:
            top_level |= {m.group(1) or m.group(2)
                          for m in re.finditer(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", c.source, re.MULTILINE)}
    original = compat_render.render_vis
    current: dict = {}

    def capped_render_vis(model, objective_f, param_f=None, optimizer=None, transforms=None, thresholds=(512,),
                          *args, **kwargs):
        used = cap_thresholds(thresholds, max_steps)
        record = [list(thresholds) if not isinstance(thresholds, (str, bytes)) else thresholds,
                  list(used) if isinstance(used, tuple) else used]
        if "cell" in current:
            current["cell"].renders.append(record)
        return original(model, objective_f, param_f, optimizer, transforms, used, *args, **kwargs)

    capped_render_vis.__doc__ = original.__doc__
    compat_render.render_vis = capped_render_vis
    try:
        for cell in cells:
            label = f"<{name}[{cell.index}]>"
            t = cell.transformed
            tree = None
            if t is not None and not t.syntax_error:
                tree = ast.parse(t.source)
            if cell.category != OPTVIS:
                cell.status = SKIPPED
                if tree is not None:
                    cell.imports_failed = _run_imports(tree, namespace, label)
                    for n in bound_names(tree):
                        if n not in namespace:
                            skipped_names[n] = (cell.index, cell.category)
                    star_imports.extend(_failed_star_imports(tree, namespace, cell.index, cell.category))
                else:
                    for m in re.finditer(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", cell.source, re.MULTILINE):
                        skipped_names.setdefault(m.group(1) or m.group(2), (cell.index, cell.category))
                for m in re.finditer(r"^\s*%aimport\s+([A-Za-z_][\w, ]*)$", cell.source, re.MULTILINE):  # binds the modules
                    for n in m.group(1).replace(",", " ").split():
                        skipped_names.setdefault(n.split(".")[0], (cell.index, cell.category))
                m = SVELTE_MAGIC.match(cell.source)
                if m:  # Lucid's magic binds the component as an attribute of its svelte module
                    magic_attributes[m.group(1)] = (cell.index, cell.category)
                continue
            current["cell"] = cell
            out = io.StringIO()
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _time_limit(cell_timeout):
                    exec(compile(t.source, label, "exec", dont_inherit=True), namespace)
                cell.status = RAN
                for n in bound_names(tree):
                    skipped_names.pop(n, None)
            except (Exception, _Timeout) as e:  # noqa: BLE001 (recorded per cell)
                cell.error, cell.where = _one_line(e), _where(e, label)
                cause = _environment_cause(e, literals)
                missing = e.name if isinstance(e, NameError) and not isinstance(e, UnboundLocalError) else None
                bound_nowhere = missing is not None and missing not in top_level
                attribute = getattr(e, "name", None) if isinstance(e, AttributeError) else None
                if attribute is not None and attribute in magic_attributes:
                    index, category = magic_attributes[attribute]
                    cell.status = DEPENDENCY
                    cell.reason = f"`{attribute}` is defined by the `%%html_define_svelte` cell magic of cell {index} ({category})"
                elif missing is not None and missing in skipped_names:
                    index, category = skipped_names[missing]
                    cell.status = DEPENDENCY
                    cell.reason = f"`{missing}` is bound by cell {index} ({category})"
                elif bound_nowhere and star_imports:
                    cell.status = DEPENDENCY
                    cell.reason = f"`{missing}` is bound by no cell; it may come from " + " or ".join(
                        f"`{statement}` in cell {index} ({category})" for index, category, statement in star_imports)
                elif cause is not None and cause[0] == DEPENDENCY:
                    cell.status, cell.reason = cause
                elif cause is not None:
                    cell.status, cell.category, cell.reason = SKIPPED, ENV, cause[1]
                else:
                    cell.status = FAILED
                    if bound_nowhere:
                        cell.reason = f"`{missing}` is bound by no cell of the notebook"
                what = {FAILED: "failed", DEPENDENCY: "dependency failure"}.get(cell.status, cell.category)
                for n in bound_names(tree) - set(namespace):
                    skipped_names[n] = (cell.index, what)
                star_imports.extend(_failed_star_imports(tree, namespace, cell.index, what))
            finally:
                cell.seconds = round(time.perf_counter() - start, 2)
                cell.output_tail = out.getvalue()[-400:]
                current.pop("cell", None)
    finally:
        compat_render.render_vis = original


def build_model_pb(path: Path, divisor: int = 1, size: int = 224) -> Path:
    """The InceptionV1-structured fake graph (``tests/fake_inception.py``) in Lucid's format:
    a frozen GraphDef with Lucid's metadata node (input name, image shape, value range)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import fake_inception
    finally:
        sys.path.remove(str(ROOT / "tests"))
    from modelzoo import lucid_format

    graph_def = fake_inception.build_graph_def(divisor=divisor, size=size)
    lucid_format.embed_metadata(graph_def, {"input_name": "input", "image_shape": [size, size, 3],
                                            "image_value_range": list(fake_inception.VALUE_RANGE)})
    lucid_format.write_graph_def(graph_def, path)
    return path


@contextlib.contextmanager
def patched(model_attrs: dict, show_dir: Path, workdir: Path):
    """The runner's environment: InceptionV1's class attributes (the model download), no
    network, no real Lucid, ``show`` into `show_dir`, cwd `workdir`, matplotlib without a
    display."""
    import matplotlib

    matplotlib.use("Agg")
    from modelzoo.vision import InceptionV1

    saved = {k: InceptionV1.__dict__.get(k) for k in model_attrs}
    env = os.environ.get("LUCID_IFV_SHOW_DIR")
    cwd = os.getcwd()
    finder = _NoRealLucid()
    real_lucid = {k: sys.modules.pop(k) for k in list(sys.modules) if k == PREFIX or k.startswith(PREFIX + ".")}
    sys.meta_path.insert(0, finder)
    for k, v in model_attrs.items():
        setattr(InceptionV1, k, v)
    os.environ["LUCID_IFV_SHOW_DIR"] = str(show_dir)
    os.chdir(workdir)
    try:
        with offline():
            yield
    finally:
        os.chdir(cwd)
        if env is None:
            os.environ.pop("LUCID_IFV_SHOW_DIR", None)
        else:
            os.environ["LUCID_IFV_SHOW_DIR"] = env
        for k, v in saved.items():
            if v is None:
                delattr(InceptionV1, k)
            else:
                setattr(InceptionV1, k, v)
        sys.meta_path.remove(finder)
        sys.modules.update(real_lucid)


def read_cells(path: Path) -> list[Cell]:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code":
            continue
        src = c.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        cells.append(Cell(i, src, _first_line(src)))
    return cells


def run_notebook(path: Path, *, model_attrs: dict, max_steps: int, name: str | None = None,
                 cell_timeout: float | None = None) -> list[Cell]:
    """Classify and run one notebook in this process (see the module doc)."""
    name = name or Path(path).name
    cells = read_cells(path)
    classify(cells)
    with tempfile.TemporaryDirectory(prefix="lucid-nb-") as tmp:
        show_dir, workdir = Path(tmp) / "show", Path(tmp) / "work"
        show_dir.mkdir()
        workdir.mkdir()
        with patched(model_attrs, show_dir, workdir):
            run_cells(cells, name, max_steps=max_steps, cell_timeout=cell_timeout)
    return cells


# -- which Lucid names the notebooks use ------------------------------------------------------------


def _lucid_name(compat_name: str) -> str:
    return PREFIX + compat_name[len(NEW_PREFIX):]


def _resolve(module: str):
    """The compat module `module` (dotted), or an error string."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 (reported)
        return _one_line(e)


def api_usage(notebooks: dict) -> dict:
    """Every Lucid name the notebooks import or use as ``alias.name`` (alias = an imported
    Lucid module), whether lucid-ifv's compat layer has it, and where it is used.

    `notebooks`: name -> list of classified `Cell`. Returns ``{lucid name: {"available": bool,
    "error": str, "uses": [(notebook, cell index, category)]}}``.
    """
    usage: dict = {}

    def note(name, available, error, where):
        entry = usage.setdefault(name, {"available": available, "error": error, "uses": []})
        if where not in entry["uses"]:
            entry["uses"].append(where)

    for nb, cells in notebooks.items():
        aliases: dict = {}  # alias -> (compat module name, module object)
        # Svelte components the notebook defines itself (``%%html_define_svelte Name`` binds
        # ``lucid.scratch.web.svelte.Name``): the notebook's names, not Lucid's
        components = {m.group(1) for c in cells for m in [SVELTE_MAGIC.match(c.source)] if m}
        for cell in cells:
            t = cell.transformed
            if t is None or t.syntax_error:
                continue
            tree = ast.parse(t.source)
            where = (nb, cell.index, cell.category)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for a in node.names:
                        if not a.name.startswith(NEW_PREFIX + "."):
                            continue
                        mod = _resolve(a.name)
                        note(_lucid_name(a.name), not isinstance(mod, str), mod if isinstance(mod, str) else "", where)
                        if a.asname and not isinstance(mod, str):
                            aliases[a.asname] = (a.name, mod)
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(NEW_PREFIX):
                    mod = _resolve(node.module)
                    for a in node.names:
                        if a.name == "*":
                            note(_lucid_name(node.module) + ".*", not isinstance(mod, str),
                                 mod if isinstance(mod, str) else "", where)
                            continue
                        full = f"{node.module}.{a.name}"
                        if isinstance(mod, str):
                            note(_lucid_name(full), False, mod, where)
                            continue
                        obj = getattr(mod, a.name, None)
                        if obj is None:
                            sub = _resolve(full)
                            obj = None if isinstance(sub, str) else sub
                        note(_lucid_name(full), obj is not None,
                             "" if obj is not None else f"{node.module} has no {a.name!r}", where)
                        if obj is not None and type(obj).__name__ == "module":
                            aliases[a.asname or a.name] = (full, obj)
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                    name, mod = aliases[node.value.id]
                    if name.endswith(".scratch.web.svelte") and node.attr in components:
                        continue
                    try:
                        ok = hasattr(mod, node.attr)
                        error = "" if ok else f"{name} has no {node.attr!r}"
                    except Exception as e:  # noqa: BLE001 (a module __getattr__ that raises)
                        ok, error = False, _one_line(e)
                    note(_lucid_name(f"{name}.{node.attr}"), ok, error, where)
    return dict(sorted(usage.items()))


# -- the report --------------------------------------------------------------------------------------

#: Causes of failures, in the order the report lists them. ``lucid-ifv`` causes are the
#: library's to fix; ``notebook`` causes are in the notebooks' own code (they fail on
#: lucid-ifv's TF2 however complete the compat layer is).
CAUSES = {
    "misc.io": ("lucid-ifv", "compat: `lucid.misc.io` is a package in Lucid (`reading`, `showing`, `saving`, "
                             "`loading`, `serialize_array`); `lucid_ifv.compat.misc.io` is one module, so "
                             "`from lucid.misc.io.reading import read` and `lucid.misc.io.showing` fail"),
    "tfutil": ("lucid-ifv", "compat: no `lucid.misc.tfutil` (`create_session`)"),
    "gradient_override": ("lucid-ifv", "compat: no `lucid.misc.gradient_override` (`gradient_override_map`)"),
    "channel_reducer": ("lucid-ifv", "compat: no `lucid.misc.channel_reducer` (`ChannelReducer`)"),
    "modelzoo": ("lucid-ifv", "compat: a Lucid `modelzoo` name is missing (compat has `vision_models` with "
                              "Lucid's 31 zoo classes, `vision_base`, `nets_factory`)"),
    "scratch": ("lucid-ifv", "compat: a `lucid.scratch` name is missing (compat ports `web.svelte`, "
                             "`parameter_editor` and `rl_util`; not `atlas_pipeline`, `pretty_graphs`, "
                             "`web.observable`, `rl_util.arch`)"),
    "param_tensor": ("lucid-ifv", "semantic difference: `param.image(...)` is a `Param` object, not a tensor "
                                  "that `param_f` code can transform with `**` or `tf.*` functions"),
    "activations": ("lucid-ifv", "missing: `Layer.activations` (Lucid downloads precomputed dataset "
                                 "activations)"),
    "tf1_api": ("notebook", "notebook code calls TF1-only `tf.*` API directly (not through lucid)"),
    "python2": ("notebook", "notebook code is Python 2"),
    "notebook_bug": ("notebook", "notebook bug (fails in Lucid too)"),
}

_MISC_IO = ("Lucid's `lucid.misc.io` is a package; `lucid_ifv.compat.misc.io` is a single module, so its "
            "submodules cannot be imported. ")
#: Diagnoses of failing cells: (notebook, cell index, a substring of the expected error) ->
#: (cause, why). A diagnosis whose error substring no longer matches is shown as out of date.
WHY: dict = {
    ("activation-atlas/activation-atlas-simple.ipynb", 8, "no activations ship"): ("activations",
        "Lucid's `model.layers[i].activations` downloads precomputed ImageNet activations "
        "(gs://modelzoo/...); lucid-ifv's `LayerInfo.activations` raises (none ship for InceptionV1). "
        "Implemented as a download, the runner would count this cell as 'environment'."),
    ("misc/decomposed_feature_vis_1x1.ipynb", 9, "no activations ship"): ("activations",
        "As activation-atlas-simple.ipynb cell 8 (`m_layer.activations`)."),
    ("feature-visualization/regularization.ipynb", 8, "AdamOptimizer"): ("tf1_api",
        "The notebook calls `tf.train.AdamOptimizer`, which TF2's `tf` does not have. Checked: with "
        "`tf.compat.v1.train.AdamOptimizer` (which lucid-ifv's `render_vis` maps to Keras Adam) all six "
        "optvis cells of this notebook run."),
    ("feature-visualization/regularization.ipynb", 17, "AdamOptimizer"): ("tf1_api", "As cell 8."),
    ("differentiable-parameterizations/xy2rgb.ipynb", 16, "AdamOptimizer"): ("tf1_api",
        "`tf.train.AdamOptimizer` (as regularization.ipynb cell 8); after that the cell would still fail: "
        "`image_cppn` comes from cell 12, skipped (`slim`). lucid-ifv has `param.cppn` instead."),
    ("differentiable-parameterizations/xy2rgb.ipynb", 19, "AdamOptimizer"): ("tf1_api",
        "As cell 16 (a default argument `tf.train.AdamOptimizer(0.005)`; `image_cppn` from skipped cell 12)."),
    ("activation-atlas/activation-atlas-collect.ipynb", 11, "resize_images"): ("tf1_api",
        "TF1's `tf.image.resize_images` (TF2: `tf.image.resize`); and `image_tensor` comes from an ImageNet "
        "data provider the notebook leaves to the reader (its cell 9 is commented out)."),
    ("activation-atlas/activation-atlas-collect.ipynb", 12, "'render' is not defined"): ("notebook_bug",
        "The notebook never imports `render` (it fails in Lucid too); `image_tensor_` would come from cell 11."),
    ("tutorial.ipynb", 17, "'range' and 'range'"): ("python2",
        "`range(-10,10) + range(-5,5) + 10*range(-2,2)` is Python 2 (lists). Checked: with `list(range(...))` "
        "the cell runs, as do all 10 optvis cells of the tutorial."),
}
#: Diagnoses by error pattern (regex on the error line), for cells without their own entry.
WHY_BY_ERROR: list = [
    (r"lucid_ifv\.compat\.misc\.io\.(reading|showing|saving|loading|serialize_array)", ("misc.io", _MISC_IO)),
    (r"lucid_ifv\.compat\.misc\.tfutil", ("tfutil", "`lucid.misc.tfutil` is missing.")),
    (r"lucid_ifv\.compat\.misc\.channel_reducer", ("channel_reducer", "`ChannelReducer` is missing.")),
    (r"lucid_ifv\.compat\.misc\.gradient_override", ("gradient_override", "`gradient_override_map` is missing.")),
    (r"lucid_ifv\.compat\.scratch", ("scratch", "A `lucid.scratch` name that compat lacks.")),
    (r"lucid_ifv\.compat\.modelzoo\.|vision_models' has no model", ("modelzoo", "A Lucid modelzoo name is missing.")),
    (r"tensorflow\._api\.v2\.\w+' has no attribute", ("tf1_api", "TF1-only `tf.*` API in notebook code.")),
]


def _why(notebook: str, cell: dict) -> tuple[str, str]:
    """(cause, diagnosis) of a failing cell; ("", "") when there is none."""
    stale = ""
    for (nb, index, expected), (cause, text) in WHY.items():
        if nb == notebook and index == cell["index"]:
            if expected in cell["error"]:
                return cause, text
            stale = f"(diagnosis out of date: it was written for an error containing {expected!r}) {text}"
            break
    for pattern, (cause, text) in WHY_BY_ERROR:  # a cell whose first error was fixed may fail on the next
        if re.search(pattern, cell["error"]):
            return cause, text
    return "", stale


def _md(text: str, limit: int = 160, code: bool = False) -> str:
    """One table cell: whitespace collapsed, `limit` characters; backticks become quotes unless
    `code` (text written as Markdown, never truncated mid-span by a sane `limit`)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    text = text.replace("|", "\\|")
    return text if code else text.replace("`", "'")


def _code(text: str, limit: int = 90) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"`{text.replace('`', chr(39))}`".replace("|", "\\|") if text else ""


def _uses(uses, keep) -> str:
    by_nb: dict = {}
    for nb, index, category in uses:
        if keep(category):
            by_nb.setdefault(nb, []).append(str(index))
    return "; ".join(f"{nb} [{', '.join(ix)}]" for nb, ix in by_nb.items())


def write_report(results: dict, out: Path, *, command: str, max_steps: int, source_label: str,
                 unreadable: dict, model_desc: str, api: dict | None = None) -> dict:
    """Write the Markdown report; return the totals."""
    cats = CATEGORIES
    totals = {c: 0 for c in cats} | {RAN: 0, FAILED: 0, DEPENDENCY: 0, "cells": 0}
    rows = []
    for nb, cells in results.items():
        counts = {c: sum(1 for x in cells if x["category"] == c) for c in cats}
        ran = sum(1 for x in cells if x["category"] == OPTVIS and x["status"] == RAN)
        failed = sum(1 for x in cells if x["category"] == OPTVIS and x["status"] == FAILED)
        dep = sum(1 for x in cells if x["category"] == OPTVIS and x["status"] == DEPENDENCY)
        for c in cats:
            totals[c] += counts[c]
        totals[RAN] += ran
        totals[FAILED] += failed
        totals[DEPENDENCY] += dep
        totals["cells"] += len(cells)
        rows.append((nb, len(cells), counts, ran, failed, dep))
    n_opt = totals[OPTVIS]
    pct = 100.0 * totals[RAN] / n_opt if n_opt else 0.0
    n_indep = n_opt - totals[DEPENDENCY]
    pct_indep = 100.0 * totals[RAN] / n_indep if n_indep else 0.0

    L = []
    L.append("# Lucid's notebooks on lucid-ifv's compat layer\n")
    L.append("Generated by `experiments/lucid_notebooks.py` (do not edit by hand; edit the script's "
             "`WHY` diagnoses and re-run):\n")
    L.append(f"```\n{command}\n```\n")
    L.append(f"- Notebooks: {source_label}.")
    L.append(f"- `--max-steps {max_steps}`: every `render_vis` call runs at most "
             f"max({max_steps}, number of thresholds) optimisation steps (its thresholds are lowered, "
             "keeping their number and order, by a wrapper the runner puts around "
             "`lucid_ifv.compat.optvis.render.render_vis`). The question is whether cells run and mean "
             "the same, not image quality.")
    L.append(f"- Model: {model_desc}")
    L.append(f"- Date: {datetime.date.today().isoformat()}.\n")

    L.append("## Result\n")
    L.append(f"**{totals[RAN]} of {n_opt} optvis cells ran ({pct:.1f}%)**; {totals[FAILED]} failed; "
             f"{totals[DEPENDENCY]} failed only because they use a name bound by a skipped (TF1 session, "
             f"environment, ...) or failed earlier cell. Leaving those dependency failures out: "
             f"{totals[RAN]} of {n_indep} ({pct_indep:.1f}%).\n")
    L.append(f"{totals['cells']} code cells in {len(results)} notebooks: "
             + ", ".join(f"{totals[c]} {c}" for c in cats) + "."
             + (f" {len(unreadable)} notebook(s) could not be read (listed at the end)." if unreadable else "")
             + "\n")

    L.append("## How cells are treated\n")
    L.append("Each code cell is transformed, then classified in this order (first match wins):\n")
    L.append("- **Transform.** Removed lines (replaced by `pass`): `!pip ... install`, `!npm install`, "
             "`!imageio_download_bin`, `!apt install` (installation); `%tensorflow_version` and "
             "`assert tf.__version__.startswith('1')` (TF1 pins); `%load_ext`, `%reload_ext`, `%autoreload`, "
             "`%matplotlib`, `%config` (IPython set-up). Import statements get the prefix swap "
             "`lucid.` -> `lucid_ifv.compat.` (`import lucid.a.b` also binds `lucid` to `lucid_ifv.compat`, "
             "as the original binds `lucid`). Nothing else in the code changes.")
    L.append("- **shell/magic**: any other line starting with `!` or `%`, a `x = !cmd` capture, an IPython "
             "automagic shell alias (`ls -lh`, `cd ..`), or a `%%` cell magic (e.g. `%%html_define_svelte`); "
             "also cells that held only removed lines. Skipped.")
    L.append("- **not Python 3**: the cell does not parse as Python 3 (Python 2 `print` statements). Skipped.")
    L.append("- **TF1 session**: the code (comments removed) matches one of the rules below. A cell that "
             "*defines* a function using a session counts: calling it needs one. Skipped.\n")
    L.append("  | rule | regular expression |\n  |---|---|")
    for label, pattern in SESSION_RULES:
        L.append(f"  | {label} | `{pattern.replace('|', chr(92) + '|')}` |")
    L.append("")
    L.append("- **TF1 API**: the code uses a `tf.` name TensorFlow 2 does not have (checked against the "
             "installed TensorFlow: e.g. `tf.train.AdamOptimizer`, `tf.image.resize_images`); the cell needs a "
             "TF2 edit (`tf.compat.v1....`) whatever library it runs on. Skipped, and listed below.")
    L.append("- **environment**: needs what is not available offline: imports a module that is not "
             "installed here (e.g. `google.colab`, `moviepy`, `umap`, `IPython`), uses a name imported from "
             "such a module by an earlier cell, Colab file upload/download or video writing, passes a URL "
             "(`http(s)://`, `gs://`; literal or a name bound to one) to a call, or holds a URL literal and "
             "calls `load`/`read`/`urlopen`/`urlretrieve`/`load_joblib`, i.e. downloads data other than the "
             "model. Skipped. A cell is also moved here *at run time* when it fails because it touched the "
             "(blocked) network, imported a third-party module that is not installed, or opened a file "
             "outside the working directory (`../...`, an absolute path) that the notebook names.")
    L.append("- **optvis**: everything else -- the cells that need no TF1 session. Executed.\n")
    L.append("Skipped cells are not executed, except their top-level import statements (so that later "
             "cells still have `np`, `tf`, `render`, ...; imports that fail are ignored). An optvis cell "
             "that fails with a NameError for a name bound only by a skipped or failed earlier cell is "
             "counted as a *dependency* failure; so is an AttributeError for a Svelte component "
             "(`lucid_svelte.Name`) that only a skipped `%%html_define_svelte Name` cell defines. Cells run in notebook order in one namespace per notebook, "
             "each notebook in its own process, in a temporary working directory, with the network blocked "
             "and real Lucid not importable; `show` writes PNGs to a temporary `$LUCID_IFV_SHOW_DIR`.\n")

    L.append("## Per notebook\n")
    L.append("| notebook | code cells | optvis | ran | failed | dependency | TF1 session | TF1 API | environment "
             "| not Python 3 | shell/magic | empty |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for nb, n, counts, ran, failed, dep in rows:
        L.append(f"| {nb} | {n} | {counts[OPTVIS]} | {ran} | {failed} | {dep} | {counts[SESSION]} | {counts[TF1_API]} "
                 f"| {counts[ENV]} | {counts[NOT_PY3]} | {counts[MAGIC]} | {counts[EMPTY]} |")
    L.append(f"| **total** | {totals['cells']} | {n_opt} | {totals[RAN]} | {totals[FAILED]} | {totals[DEPENDENCY]} "
             f"| {totals[SESSION]} | {totals[TF1_API]} | {totals[ENV]} | {totals[NOT_PY3]} | {totals[MAGIC]} "
             f"| {totals[EMPTY]} |\n")

    L.append("## Failing optvis cells\n")
    L.append("Cell numbers count all cells of the notebook (markdown too) from 0. `where`: the failing "
             "line of the cell and the innermost lucid-ifv frame.\n")
    failing = [(nb, c) for nb, cells in results.items() for c in cells
               if c["category"] == OPTVIS and c["status"] == FAILED]
    by_cause: dict = {}
    for nb, c in failing:
        by_cause.setdefault(_why(nb, c)[0], []).append(f"{nb} [{c['index']}]")
    L.append("By cause (`lucid-ifv`: the library's to fix; `notebook`: the notebook's own code, which fails on "
             "TF2 / Python 3 whatever the library does):\n")
    L.append("| cause | whose | cells | count |\n|---|---|---|---|")
    for key in [*CAUSES, ""]:
        if key in by_cause:
            whose, text = CAUSES.get(key, ("?", "not diagnosed yet"))
            L.append(f"| {text} | {whose} | {', '.join(by_cause[key])} | {len(by_cause[key])} |")
    L.append("")
    L.append("| notebook | cell | first line | error | where | why |")
    L.append("|---|---|---|---|---|---|")
    for nb, c in failing:
        why = _why(nb, c)[1] or c.get("reason", "") or "(not diagnosed yet)"
        L.append(f"| {nb} | {c['index']} | {_code(c['first_line'], 60)} | {_md(c['error'], 200)} "
                 f"| {_md(c['where'], 80)} | {_md(why, 2000, code=True)} |")
    if not failing:
        L.append("| (none) | | | | | |")
    L.append("")

    L.append("## Dependency failures\n")
    L.append("Optvis cells that failed only because a name they use is bound by a skipped or failed "
             "earlier cell.\n")
    L.append("| notebook | cell | first line | missing | error |")
    L.append("|---|---|---|---|---|")
    for nb, cells in results.items():
        for c in cells:
            if c["category"] == OPTVIS and c["status"] == DEPENDENCY:
                L.append(f"| {nb} | {c['index']} | {_code(c['first_line'], 60)} | {_md(c['reason'])} "
                         f"| {_md(c['error'], 120)} |")
    L.append("")

    L.append("## Skipped cells\n")
    for cat in (SESSION, TF1_API, ENV, NOT_PY3, MAGIC):
        L.append(f"### {cat}\n")
        L.append("| notebook | cell | first line | why skipped |")
        L.append("|---|---|---|---|")
        for nb, cells in results.items():
            for c in cells:
                if c["category"] == cat:
                    L.append(f"| {nb} | {c['index']} | {_code(c['first_line'], 60)} | {_md(c['reason'], 140)} |")
        L.append("")
    L.append(f"{totals[EMPTY]} cells hold no code (blank or comments only, e.g. license headers) and are "
             "not listed.\n")

    if api:
        missing = {k: v for k, v in api.items() if not v["available"]}
        L.append("## Lucid names the notebooks use\n")
        L.append(f"{len(api)} Lucid modules and names are imported or used as `module.name` by the notebooks "
                 f"(any cell); lucid-ifv's compat layer has {len(api) - len(missing)} of them. Missing "
                 "(`optvis` cells: where they stop a cell that counts; other cells are skipped anyway):\n")
        L.append("| Lucid name | lucid-ifv | used by optvis cells | used by skipped cells |")
        L.append("|---|---|---|---|")
        for name, v in missing.items():
            L.append(f"| `{name}` | {_md(v['error'], 120)} | {_uses(v['uses'], lambda c: c == OPTVIS)} "
                     f"| {_uses(v['uses'], lambda c: c != OPTVIS)} |")
        L.append("")
        L.append("Available: " + ", ".join(f"`{k}`" for k, v in api.items() if v["available"]) + ".\n")

    if unreadable:
        L.append("## Notebooks that could not be read\n")
        L.append("| notebook | problem |\n|---|---|")
        for nb, problem in unreadable.items():
            L.append(f"| {nb} | {_md(problem)} |")
        L.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L) + "\n", encoding="utf-8")
    return {"optvis": n_opt, "ran": totals[RAN], "failed": totals[FAILED], "dependency": totals[DEPENDENCY],
            "percent": pct, "percent_without_dependency": pct_indep}


# -- command line -------------------------------------------------------------------------------------


def _worker(args) -> int:
    attrs = {"model_path": str(args.model_pb)}
    cells = run_notebook(Path(args.worker), model_attrs=attrs, max_steps=args.max_steps,
                         name=args.name, cell_timeout=args.cell_timeout)
    data = []
    for c in cells:
        d = asdict(c)
        d.pop("transformed")
        d.pop("source")
        data.append(d)
    Path(args.result).write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


def _api_for(root: Path, results: dict) -> dict:
    """`api_usage` of the notebooks that ran, with each cell's final category."""
    notebooks = {}
    for rel, cell_results in results.items():
        cells = read_cells(root / rel)
        classify(cells)
        final = {c["index"]: c["category"] for c in cell_results}
        for cell in cells:
            cell.category = final.get(cell.index, cell.category)
        notebooks[rel] = cells
    return {k: {**v, "uses": [list(u) for u in v["uses"]]} for k, v in api_usage(notebooks).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", type=Path, help="a checkout's notebooks/ folder (searched recursively)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lucid-notebooks.md")
    parser.add_argument("--max-steps", type=int, default=4, help="cap on the optimisation steps of every render_vis")
    parser.add_argument("--cell-timeout", type=float, default=900.0, help="seconds per cell (0: none)")
    parser.add_argument("--only", default=None, help="regex: run only the notebooks whose path matches")
    parser.add_argument("--source-label", default=None, help="where the notebooks come from (printed in the report)")
    parser.add_argument("--results", type=Path, default=None, help="also write the raw per-cell results (JSON)")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="rewrite the report from a --results file without running anything")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-pb", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_steps < 1:
        parser.error("--max-steps must be at least 1")
    if args.worker:
        return _worker(args)
    if args.from_results is None and args.notebooks is None:
        parser.error("--notebooks is required")

    command = "python experiments/lucid_notebooks.py " + shlex.join(
        a if not a.startswith("/") else "<" + Path(a).name + ">" for a in (argv if argv is not None else sys.argv[1:]))
    model_desc = ("`tests/fake_inception.py` `build_graph_def(divisor=1, size=224)` -- InceptionV1's node names, "
                  "ops and full channel counts, 224x224 input, random weights -- written in Lucid's format "
                  "(frozen GraphDef with Lucid's `lucid_metadata_json` node) and set as "
                  "`modelzoo.vision.InceptionV1.model_path` (class attribute); the only replacement.")
    if args.from_results:
        saved = json.loads(args.from_results.read_text())
        totals = write_report(saved["results"], args.out, command=saved["command"], max_steps=saved["max_steps"],
                              source_label=saved["source_label"], unreadable=saved["unreadable"],
                              model_desc=model_desc, api=saved.get("api"))
        print(json.dumps(totals))
        return 0

    root = args.notebooks.resolve()
    paths = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if args.only:
        paths = [p for p in paths if re.search(args.only, str(p.relative_to(root)))]
    results, unreadable = {}, {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory(prefix="lucid-notebooks-") as tmp:
        pb = build_model_pb(Path(tmp) / "InceptionV1.pb")
        for path in paths:
            rel = str(path.relative_to(root))
            try:
                read_cells(path)
            except (ValueError, OSError, UnicodeDecodeError) as e:
                size = path.stat().st_size
                unreadable[rel] = ("empty file (0 bytes)" if size == 0 else
                                   f"not a notebook ({type(e).__name__}: {e}; {size} bytes)")
                print(f"{rel}: unreadable ({e})", flush=True)
                continue
            result = Path(tmp) / "result.json"
            result.unlink(missing_ok=True)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", str(path), "--model-pb", str(pb),
                 "--max-steps", str(args.max_steps), "--cell-timeout", str(args.cell_timeout),
                 "--result", str(result), "--name", rel],
                env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not result.exists():
                unreadable[rel] = f"the runner process failed (exit {proc.returncode}): " + \
                    (proc.stderr.strip().splitlines() or [""])[-1]
                print(f"{rel}: runner failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            cells = json.loads(result.read_text())
            results[rel] = cells
            opt = [c for c in cells if c["category"] == OPTVIS]
            print(f"{rel}: {sum(c['status'] == RAN for c in opt)}/{len(opt)} optvis cells ran "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    source_label = args.source_label or f"`{root.name}/` ({len(paths)} notebooks)"
    api = _api_for(root, results)
    if args.results:
        args.results.write_text(json.dumps({"results": results, "unreadable": unreadable, "command": command,
                                            "max_steps": args.max_steps, "source_label": source_label, "api": api},
                                           indent=1))
    totals = write_report(results, args.out, command=command, max_steps=args.max_steps, source_label=source_label,
                          unreadable=unreadable, model_desc=model_desc, api=api)
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
