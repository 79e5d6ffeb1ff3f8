"""Fetch model files: local paths, ``file://``, ``http(s)://`` and ``gs://`` URLs.

`resolve(source)` always returns a local `pathlib.Path`. Local files are returned as they
are; remote files are downloaded once into a cache directory and served from there
afterwards. A download

- goes to a temporary file in the cache directory and is moved into place with
  `os.replace`, so the cache never holds a partial file (an interrupted or failed download
  leaves nothing behind);
- is checked against an optional SHA-256 (a mismatch raises `ValueError` and the file is
  discarded);
- holds an exclusive `fcntl.flock` lock (``<cache>/.locks/<file>.lock``) so concurrent
  processes download a file once;
- shows a tqdm progress bar (``progress=False`` silences it).

The cache directory is the ``cache_dir`` argument, else ``$LUCID_IFV_CACHE``, else
``~/.cache/lucid-ifv``. A cached file is named ``<16 hex digits of sha256(url)>-<basename>``,
so the basename stays readable and distinct URLs never collide.

``gs://bucket/path`` is Google Cloud Storage's public HTTPS endpoint
``https://storage.googleapis.com/bucket/path`` (what Lucid's modelzoo uses).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Union

from tqdm.auto import tqdm

try:  # POSIX only; elsewhere downloads simply are not locked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

Source = Union[str, "os.PathLike[str]"]

CACHE_ENV = "LUCID_IFV_CACHE"
GCS_ENDPOINT = "https://storage.googleapis.com"
REMOTE_SCHEMES = ("http", "https", "gs")
TIMEOUT_SECONDS = 60.0
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "lucid-ifv"


class DownloadError(OSError):
    """A remote file could not be downloaded (HTTP error, network failure, cut transfer)."""


# -- sources and URLs -------------------------------------------------------------------


def _scheme(source: str) -> str:
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    return "" if len(scheme) == 1 else scheme  # "C:\\x" is a Windows path, not a URL


def is_remote(source: Source) -> bool:
    """Whether `source` is a ``http://``, ``https://`` or ``gs://`` URL."""
    return isinstance(source, str) and _scheme(source) in REMOTE_SCHEMES


def gs_to_https(url: str) -> str:
    """``gs://bucket/path`` -> ``https://storage.googleapis.com/bucket/path``.

    Any other string is returned unchanged. A ``gs://`` URL without a bucket or an object
    path raises ValueError.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "gs":
        return url
    path = parts.path.lstrip("/")
    if not parts.netloc or not path:
        raise ValueError(f"malformed gs:// URL {url!r}: expected gs://<bucket>/<path>")
    return f"{GCS_ENDPOINT}/{parts.netloc}/{path}"


def join(base: Source, relative: str) -> str:
    """The source `relative` names when read relative to the source `base`.

    Used for Lucid manifests, whose ``model_path`` is relative to the manifest: a URL base
    joins like a web link (``gs://`` mapped to HTTPS first), a local base joins to its
    directory. Absolute paths and URLs in `relative` are returned unchanged.
    """
    if _scheme(relative) or os.path.isabs(relative):
        return relative
    base = os.fspath(base)
    if is_remote(base):
        return urllib.parse.urljoin(gs_to_https(base), relative)
    return str(_local_path(base).parent / relative)


def default_cache_dir() -> Path:
    """``$LUCID_IFV_CACHE`` if set, else ``~/.cache/lucid-ifv``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lucid-ifv"


def cache_path(url: str, cache_dir: Source | None = None) -> Path:
    """Where the download of `url` lives in the cache: ``<hash16>-<basename>``."""
    url = gs_to_https(url)
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    basename = os.path.basename(urllib.parse.urlsplit(url).path)
    basename = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.unquote(basename)) or "download"
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"{digest}-{basename}"


def _local_path(source: str) -> Path:
    """The path a local source (plain path or ``file://`` URL) names."""
    if _scheme(source) == "file":
        parts = urllib.parse.urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// URL {source!r} names host {parts.netloc!r}; only local files work")
        return Path(urllib.request.url2pathname(parts.path))
    return Path(source).expanduser()


# -- hashing ----------------------------------------------------------------------------


def _normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = str(sha256).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return value


def file_sha256(path: Source) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(what: str, expected: str, actual: str, note: str = "") -> ValueError:
    return ValueError(f"sha256 mismatch for {what}: expected {expected}, got {actual}{note}")


# -- the public entry point -----------------------------------------------------------------


def resolve(
    source: Source,
    cache_dir: Source | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """A local path for `source`, downloading (once, into the cache) if it is remote.

    Args:
      source: a local path, ``file://`` URL, ``http(s)://`` URL or ``gs://bucket/path``.
      cache_dir: cache directory for remote files (default ``$LUCID_IFV_CACHE`` or
        ``~/.cache/lucid-ifv``).
      sha256: expected hex SHA-256 of the file; checked for local and remote files.
      progress: show a tqdm progress bar while downloading.
    Returns:
      The local file's path (for remote sources, the cached copy).
    Raises:
      FileNotFoundError: a local source does not exist.
      DownloadError: a remote source could not be downloaded (HTTP error, network error,
        transfer cut short).
      ValueError: the SHA-256 does not match, or the source is not a supported kind.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or URL string, got {type(source).__name__}")
    source = os.fspath(source)
    expected = _normalize_sha256(sha256)
    scheme = _scheme(source)
    if scheme in REMOTE_SCHEMES:
        return _resolve_remote(gs_to_https(source), cache_dir, expected, progress)
    if scheme not in ("", "file"):
        raise ValueError(
            f"unsupported source {source!r}: expected a local path or a file://, http://, "
            f"https:// or gs:// URL"
        )
    path = _local_path(source)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "model file not found", str(path))
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise _mismatch(str(path), expected, actual)
    return path


def _resolve_remote(url: str, cache_dir, expected: str | None, progress: bool) -> Path:
    target = cache_path(url, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".locks" / f"{target.name}.lock"):
        if target.is_file():
            if expected is None or file_sha256(target) == expected:
                return target
            target.unlink()  # a stale or foreign copy: fetch it again and check that
        _download(url, target, expected, progress)
    return target


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (blocking) for the duration of the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "ab") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _open_url(url: str):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) while downloading {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason}") from e


def _download(url: str, target: Path, expected: str | None, progress: bool) -> None:
    """Stream `url` into a temporary file next to `target`, check it, move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _open_url(url) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            label = target.name.split("-", 1)[-1]
            with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                      disable=not progress, leave=False) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        raise DownloadError(
                            f"download of {url} was interrupted after {received} bytes: {e!r}"
                        ) from e
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise DownloadError(
                    f"download of {url} is incomplete: received {received} of {total} bytes "
                    f"(the connection closed early)"
                )
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise _mismatch(url, expected, actual, "; the download was discarded")
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
