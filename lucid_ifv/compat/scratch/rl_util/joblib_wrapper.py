"""``lucid.scratch.rl_util.joblib_wrapper``: `load_joblib` / `save_joblib` (joblib files: the
RL notebooks' observations, trajectories and metadata). Needs ``joblib`` (installed with
scikit-learn, ``pip install 'lucid-ifv[train]'``).

A joblib file is a pickle: loading one runs code the file chooses, so only load files you
trust. Unlike Lucid, `load_joblib` reads local files and open handles only; it does not
download (Lucid's ``load_using_loader`` fetched and unpickled URLs): download a file you trust
yourself and pass its path.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from lucid_ifv.atomic import write_atomic


def _joblib():
    try:
        import joblib
    except ImportError:
        raise ImportError("load_joblib / save_joblib need joblib: pip install joblib "
                          "(or pip install 'lucid-ifv[train]', which brings it with scikit-learn)") from None
    return joblib


def _local(url_or_path, what: str) -> Path:
    source = os.fspath(url_or_path)
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() == "file":
        return Path(urllib.parse.unquote(parts.path))
    if len(parts.scheme) > 1:  # http(s)://, gs://, ... (one letter: a Windows drive)
        raise ValueError(f"{what}: {source!r} is remote. Joblib files are pickles, which run code when loaded, "
                         f"so lucid-ifv does not download and load them; download it yourself if you trust "
                         f"its source, then pass the local path")
    return Path(source).expanduser()


def load_joblib(url_or_handle, *, cache=None, **kwargs):
    """``joblib.load`` of a local path, ``file://`` URL or open binary handle (see the module
    doc: remote URLs are refused). `cache` is accepted for Lucid's signature and unused."""
    joblib = _joblib()
    if hasattr(url_or_handle, "read"):
        return joblib.load(url_or_handle, **kwargs)
    path = _local(url_or_handle, "load_joblib")
    if not path.is_file():
        raise FileNotFoundError(f"load_joblib: no file at {path}")
    return joblib.load(path, **kwargs)


def save_joblib(value, url_or_handle, **kwargs):
    """``joblib.dump`` of `value` to a local path / ``file://`` URL (written atomically) or an
    open binary handle."""
    joblib = _joblib()
    if hasattr(url_or_handle, "write"):
        joblib.dump(value, url_or_handle, **kwargs)
        return
    write_atomic(_local(url_or_handle, "save_joblib"), lambda handle: joblib.dump(value, handle, **kwargs))
