"""``lucid.scratch.web.svelte``: Svelte (v2) components as HTML widgets, Lucid's module.

``SvelteComponent(name, path)`` returns a function ``data -> widget``: it embeds the compiled
component (a ``.js`` file built with ``svelte compile --format iife``; a ``.html`` source is
compiled with the ``svelte`` command-line tool if it is on PATH) and displays it with ``data``
through `lucid_ifv.compat.misc.io.showing._display_html`: inline in Jupyter, otherwise written
to an ``.html`` file in the show folder (``$LUCID_IFV_SHOW_DIR``, see ``show``), whose path the
call returns.

The cell magic ``%%html_define_svelte Name`` (a component's source as the cell) compiles the
cell and binds ``lucid_svelte.Name`` in this module, as Lucid's does. It is registered on import
when IPython is installed and running; the module imports without IPython.

Differences from Lucid: failures raise (no ``svelte`` tool: RuntimeError saying how to install
it; a failed compile: RuntimeError with the compiler's output; another extension: ValueError)
where Lucid prints and goes on with an empty component; placeholders are filled in the
template only (Lucid's chained ``str.replace`` also rewrites ``$name``, ``$data`` and ``$id``
inside the component's code); ``data`` may hold NumPy values; the compiler is run without a
shell; the widget function returns what ``_display_html`` returns.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from lucid_ifv.compat.misc.io import _JSONEncoder
from lucid_ifv.compat.misc.io.reading import read
from lucid_ifv.compat.misc.io.showing import _display_html

_template = """
  <div id='$id'></div>
  <script>
  $js
  </script>
  <script>
    var app = new $name({
        target: document.querySelector('#$id'),
        data: $data,
      });
  </script>
 """

_INSTALL = ("install Svelte 2's compiler with `npm install -g svelte@2` (the notebooks use "
            "`npm install -g svelte-cli@2.2.0`), or pass a compiled .js file "
            "(`svelte compile --format iife Name.html > Name.js`)")
_svelte_temp_dir = None  # made on first use of the cell magic (Lucid: at import)


def js_id(name):
    """`name` plus a random suffix: a JavaScript identifier (no dashes) for one widget."""
    return name + "_" + str(uuid.uuid4()).replace("-", "_")


def build_svelte(html_fname):
    """Compile the Svelte 2 component `html_fname` (``X.html``) to ``X.js`` (an IIFE whose
    global is named after the file) with the ``svelte`` command; return the ``.js`` path.

    Raises RuntimeError when the ``svelte`` command is not on PATH or the compile fails."""
    html_fname = str(html_fname)
    js_fname = html_fname[: -len(".html")] + ".js" if html_fname.endswith(".html") else html_fname + ".js"
    svelte = shutil.which("svelte")
    if svelte is None:
        raise RuntimeError(f"cannot compile the Svelte component {html_fname}: the `svelte` command is not on "
                           f"PATH; {_INSTALL}")
    cmd = [svelte, "compile", "--format", "iife", html_fname]
    print(" ".join(cmd) + " > " + js_fname)
    done = subprocess.run(cmd, capture_output=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        raise RuntimeError(f"Svelte build of {html_fname} failed (exit {done.returncode}). Output:\n{output}")
    Path(js_fname).write_bytes(done.stdout)
    return js_fname


def _fill(template: str, values: dict) -> str:
    return re.sub(r"\$(js|name|data|id)\b", lambda m: values[m.group(1)], template)


def SvelteComponent(name, path):
    """Display Svelte components in IPython (or write them to HTML files elsewhere).

    Args:
      name: name of the Svelte component (must match the component's file name when built:
        the global its IIFE defines).
      path: path of the compiled Svelte ``.js`` file or of the source ``.html`` file (then the
        ``svelte`` tool compiles it).

    Returns:
      A function mapping data (a JSON-able dict) to a rendered Svelte component: shown inline
      in Jupyter (returns None), else written to an ``.html`` file (returns its path).
    """
    path = str(path)
    if not re.fullmatch(r"[A-Za-z_$][\w$]*", str(name)):
        raise ValueError(f"SvelteComponent: name {name!r} must be a JavaScript identifier (the component's global)")
    if path.endswith(".js"):
        js_path = path
    elif path.endswith(".html"):
        print("Trying to build svelte component from html...")
        js_path = build_svelte(path)
    else:
        raise ValueError(f"SvelteComponent: {path!r} is neither a compiled component (.js) nor its source (.html)")
    js_content = read(js_path, encoding="utf-8")

    def inner(data):
        data_js = json.dumps(data, cls=_JSONEncoder).replace("</", "<\\/")  # no "</script>" inside the script
        html = _fill(_template, {"js": js_content, "name": name, "data": data_js, "id": js_id(name)})
        return _display_html(html)

    inner.__name__ = inner.__qualname__ = str(name)
    return inner


def html_define_svelte(line, cell):
    """The ``%%html_define_svelte Name`` cell magic: compile the cell (a Svelte 2 component's
    source) and bind ``Name`` in this module to its `SvelteComponent`."""
    global _svelte_temp_dir
    words = line.split()
    if not words:
        raise ValueError("%%html_define_svelte needs the component's name: %%html_define_svelte Name")
    base_name = words[0]
    if _svelte_temp_dir is None:
        _svelte_temp_dir = tempfile.mkdtemp(prefix="svelte_")
    id_str = js_id(base_name)
    html_fname = str(Path(_svelte_temp_dir) / f"{id_str}.html")
    Path(html_fname).write_text(cell, encoding="utf-8")
    component = SvelteComponent(id_str, html_fname)
    globals()[base_name] = component


def _register_magic() -> bool:
    """Register `html_define_svelte` as a cell magic when IPython is installed and running."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "register_magic_function"):
        return False
    shell.register_magic_function(html_define_svelte, "cell", "html_define_svelte")
    return True


_register_magic()


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}", name=name)
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}: no Svelte component {name!r} is defined; define it "
        f"with the %%html_define_svelte cell magic (IPython) or with SvelteComponent({name!r}, path)",
        name=name)
