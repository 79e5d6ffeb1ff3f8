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
  processes download a file once, and first deletes ``.part`` files that killed downloads
  left behind (any whose download lock is free);
- follows redirects only to the URL's own host (scheme, host and port), or to hosts the
  caller names in ``allow_hosts``; any other redirect is a `DownloadError`;
- is limited to ``max_bytes`` (default 1 GiB, ``$LUCID_IFV_MAX_DOWNLOAD_BYTES``): a larger
  Content-Length is refused before the body is read, a body that grows past it is aborted;
- when no SHA-256 vouches for it, must parse as its expected format (``expect``, else from
  the file name: ``.pb`` a GraphDef, ``.json`` JSON, ``.txt`` UTF-8 text) before it is
  cached; a download of unknown format that came without Content-Length (so nothing shows
  that it is complete) is refused;
- is checked against the pinned SHA-256 of known files (`PINNED_SHA256`) when the caller
  gives none;
- shows a tqdm progress bar (``progress=False`` silences it).

Remote manifests name their graph relative to themselves; `manifest_target` resolves such a
``model_path`` and refuses local paths and other hosts unless the caller allows them.

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
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Union

from tqdm.auto import tqdm

try:  # POSIX only; elsewhere downloads simply are not locked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

Source = Union[str, "os.PathLike[str]"]

CACHE_ENV = "LUCID_IFV_CACHE"
MAX_BYTES_ENV = "LUCID_IFV_MAX_DOWNLOAD_BYTES"
#: Default download size limit: 1 GiB (Lucid's largest vision graphs are a few hundred MB).
DEFAULT_MAX_BYTES = 1 << 30
GCS_ENDPOINT = "https://storage.googleapis.com"
REMOTE_SCHEMES = ("http", "https", "gs")
TIMEOUT_SECONDS = 60.0
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "lucid-ifv"
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: SHA-256 of published files, checked whenever they are fetched without an explicit
#: ``sha256=``. Keyed by HTTPS URL (``gs://`` mapped with `gs_to_https`).
PINNED_SHA256: dict[str, str | None] = {
    # Lucid 0.3.10's InceptionV1 (modelzoo.vision.InceptionV1.model_path), the inception5h
    # graph. Lucid publishes no checksum for it and none was reachable when this was
    # written (no network; nothing in Lucid's source, its docs or this repository), so
    # the value is left unset rather than guessed. Fill it in with the SHA-256 of the file
    # downloaded from this URL and compared against a second, independent copy (e.g.
    # ``tensorflow_inception_graph.pb`` from
    # https://storage.googleapis.com/download.tensorflow.org/models/inception5h.zip, if it
    # is byte-identical); from then on every fetch of the URL is checked against it.
    GCS_ENDPOINT + "/modelzoo/vision/other_models/InceptionV1.pb": None,
}


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


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a remote URL, ``gs://`` mapped to HTTPS first."""
    parts = urllib.parse.urlsplit(gs_to_https(url))
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def _hosts(allow_hosts: Iterable[str] | str | None) -> set[str]:
    if allow_hosts is None:
        return set()
    if isinstance(allow_hosts, str):
        allow_hosts = [allow_hosts]
    return {str(h).strip().lower() for h in allow_hosts}


def same_origin(url: str, base: str, allow_hosts: Iterable[str] = ()) -> bool:
    """Whether remote `url` is on `base`'s host (same scheme, host and port) or on a host
    named in `allow_hosts` (``"host"``: any scheme and port; ``"host:port"``: that port)."""
    if _scheme(url) not in REMOTE_SCHEMES:
        return False
    scheme, host, port = _origin(url)
    if (scheme, host, port) == _origin(base):
        return True
    allowed = _hosts(allow_hosts)
    return host in allowed or f"{host}:{port}" in allowed


def manifest_target(manifest: Source, model_path, *, allow_hosts: Iterable[str] = (),
                    allow_local: bool = False) -> str:
    """The source a manifest's ``model_path`` names, read relative to the manifest.

    A local manifest may name anything (`join`). A remote manifest (``http(s)://``,
    ``gs://``) is someone else's file, so its ``model_path`` must stay on the manifest's own
    host: relative paths resolve against the manifest's URL; local paths (``/etc/...``,
    ``file://``, ``~/...``) are refused unless `allow_local`; URLs on other hosts (also
    ``//host/...`` and scheme changes) are refused unless the host is in `allow_hosts`.

    Raises ValueError naming the manifest and the refused path.
    """
    manifest = os.fspath(manifest)
    if not isinstance(model_path, str) or not model_path.strip():
        raise ValueError(f"{manifest}: model_path {model_path!r} must be a non-empty string (a path or URL)")
    if not is_remote(manifest):
        return join(manifest, model_path)
    scheme = _scheme(model_path)
    network_path = model_path.startswith("//")  # "//host/path": a URL on another host
    local = scheme == "file" or (not scheme and not network_path and (
        os.path.isabs(model_path) or model_path.startswith(("~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", model_path)
    ))
    if local:
        if allow_local:
            return model_path
        raise ValueError(
            f"refusing model_path {model_path!r} of remote manifest {manifest}: it names a local "
            f"file; a remote manifest may only name files relative to itself (pass "
            f"allow_local=True if you trust it)"
        )
    if scheme and scheme not in REMOTE_SCHEMES:
        raise ValueError(
            f"refusing model_path {model_path!r} of remote manifest {manifest}: unsupported "
            f"scheme {scheme!r}"
        )
    target = urllib.parse.urljoin(gs_to_https(manifest), gs_to_https(model_path))
    if not same_origin(target, manifest, allow_hosts):
        scheme, host, port = _origin(target)
        raise ValueError(
            f"refusing model_path {model_path!r} of remote manifest {manifest}: it points at "
            f"{scheme}://{host}:{port}, not the manifest's own host; pass "
            f"allow_hosts=[{f'{host}:{port}'!r}] if you trust it"
        )
    return target


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


# -- limits and formats -------------------------------------------------------------------


def max_download_bytes() -> int:
    """The default download size limit: ``$LUCID_IFV_MAX_DOWNLOAD_BYTES`` if set, else
    `DEFAULT_MAX_BYTES` (1 GiB)."""
    env = os.environ.get(MAX_BYTES_ENV)
    if env is None or not env.strip():
        return DEFAULT_MAX_BYTES
    return _check_max_bytes(env.strip(), f"${MAX_BYTES_ENV}")


def _check_max_bytes(value, what: str = "max_bytes") -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number <= 0 or (isinstance(value, float) and value != number):
        raise ValueError(f"{what} must be a positive whole number of bytes, got {value!r}")
    return number


def _check_graphdef(path: Path) -> None:
    # Imports TensorFlow, which only graph downloads need.
    from modelzoo.lucid_format import read_graph_def

    read_graph_def(path)


def _check_json(path: Path) -> None:
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"it is not JSON: {e}") from None


def _check_text(path: Path) -> None:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"it is not UTF-8 text: {e}") from None
    if b"\x00" in data:
        raise ValueError("it is not text: it holds NUL bytes")


#: Format checks for downloads no SHA-256 vouches for (``expect=``); each raises ValueError.
FORMATS: dict[str, Callable[[Path], None]] = {
    "graphdef": _check_graphdef, "json": _check_json, "text": _check_text,
}
_SUFFIX_FORMATS = {".pb": "graphdef", ".json": "json", ".txt": "text"}
_FORMAT_NAMES = {"graphdef": "a GraphDef", "json": "JSON", "text": "UTF-8 text"}


def _format_check(url: str, expect) -> tuple[str | None, Callable[[Path], None] | None]:
    """(name, check) of the format expected of `url`: `expect` (a `FORMATS` key or a
    callable), else inferred from the URL's suffix; (None, None) if unknown."""
    if expect is None:
        expect = _SUFFIX_FORMATS.get(Path(urllib.parse.urlsplit(url).path).suffix.lower())
        if expect is None:
            return None, None
    if callable(expect):
        return getattr(expect, "__name__", "the expected format"), expect
    if expect not in FORMATS:
        raise ValueError(f"expect must be one of {', '.join(FORMATS)} or a callable, got {expect!r}")
    return _FORMAT_NAMES.get(expect, expect), FORMATS[expect]


# -- the public entry point -----------------------------------------------------------------


def resolve(
    source: Source,
    cache_dir: Source | None = None,
    sha256: str | None = None,
    progress: bool = True,
    *,
    max_bytes: int | None = None,
    allow_hosts: Iterable[str] = (),
    expect: str | Callable[[Path], None] | None = None,
) -> Path:
    """A local path for `source`, downloading (once, into the cache) if it is remote.

    Args:
      source: a local path, ``file://`` URL, ``http(s)://`` URL or ``gs://bucket/path``.
      cache_dir: cache directory for remote files (default ``$LUCID_IFV_CACHE`` or
        ``~/.cache/lucid-ifv``).
      sha256: expected hex SHA-256 of the file; checked for local and remote files. Remote
        files listed in `PINNED_SHA256` are checked against their pin when it is None.
      progress: show a tqdm progress bar while downloading.
      max_bytes: download size limit (default `max_download_bytes()`: 1 GiB or
        ``$LUCID_IFV_MAX_DOWNLOAD_BYTES``).
      allow_hosts: hosts (``"host"`` or ``"host:port"``) redirects may lead to besides the
        URL's own.
      expect: the format a download must parse as when no SHA-256 vouches for it:
        ``"graphdef"``, ``"json"``, ``"text"`` or a callable raising ValueError (default:
        from the file name's suffix, see `FORMATS`).
    Returns:
      The local file's path (for remote sources, the cached copy).
    Raises:
      FileNotFoundError: a local source does not exist.
      DownloadError: a remote source could not be downloaded (HTTP error, network error,
        transfer cut short, redirect to another host, size limit exceeded, a body that does
        not parse as its format).
      ValueError: the SHA-256 does not match, or the source is not a supported kind.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or URL string, got {type(source).__name__}")
    source = os.fspath(source)
    expected = _normalize_sha256(sha256)
    scheme = _scheme(source)
    if scheme in REMOTE_SCHEMES:
        url = gs_to_https(source)
        if expected is None:
            expected = _normalize_sha256(PINNED_SHA256.get(url))
        limit = max_download_bytes() if max_bytes is None else _check_max_bytes(max_bytes)
        check = _format_check(url, expect)
        return _resolve_remote(url, cache_dir, expected, progress, limit, _hosts(allow_hosts), check)
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


def _resolve_remote(url: str, cache_dir, expected: str | None, progress: bool, max_bytes: int,
                    allow_hosts: set[str], check) -> Path:
    target = cache_path(url, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".locks" / f"{target.name}.lock"):
        clean_stale_parts(target.parent, holding=target.name)
        if target.is_file():
            if expected is None or file_sha256(target) == expected:
                return target
            target.unlink()  # a stale or foreign copy: fetch it again and check that
        _download(url, target, expected, progress, max_bytes, allow_hosts, check)
    return target


@contextlib.contextmanager
def _locked(lock_path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `lock_path` for the duration of the block; yields whether
    the lock was taken (always True when `blocking`)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "ab") as handle:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_PART = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.part$")


def clean_stale_parts(directory: Path, holding: str | None = None) -> list[Path]:
    """Delete the ``.<file>.<random>.part`` files of downloads that died (SIGKILL, power
    loss) in cache `directory`; return them.

    A part file is stale when nobody holds its file's download lock: the files of `holding`
    (whose lock the caller holds) always are; others are deleted only if their lock can be
    taken at once. Without `fcntl`, only the files of `holding` are deleted.
    """
    removed = []
    for part in sorted(Path(directory).glob(".*.part")):
        match = _PART.match(part.name)
        if match is None:
            continue
        name = match["name"]
        if name != holding and fcntl is None:
            continue
        lock = contextlib.nullcontext(True) if name == holding else _locked(
            Path(directory) / ".locks" / f"{name}.lock", blocking=False)
        with lock as free:
            if free:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                    removed.append(part)
    return removed


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the first URL's host or to `allow_hosts` (checked before
    urllib's own rules, so every refused redirect gets the same message)."""

    def __init__(self, url: str, allow_hosts: set[str]):
        super().__init__()
        self.url = url
        self.allow_hosts = allow_hosts

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            newurl = urllib.parse.urljoin(req.full_url, location)
            if not same_origin(newurl, self.url, self.allow_hosts):
                fp.close()
                remote = _scheme(newurl) in REMOTE_SCHEMES
                _, host, port = _origin(newurl) if remote else ("", "", None)
                hint = f"; pass allow_hosts=[{f'{host}:{port}'!r}] if you trust it" if host else ""
                raise DownloadError(
                    f"refusing the redirect (HTTP {code}) from {req.full_url} to {newurl}: "
                    f"downloads follow redirects only to the same host{hint}"
                )
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _open_url(url: str, allow_hosts: set[str] = frozenset()):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    opener = urllib.request.build_opener(_SameHostRedirects(url, set(allow_hosts)))
    try:
        return opener.open(request, timeout=TIMEOUT_SECONDS)
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) while downloading {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, DownloadError):
            raise reason from None
        raise DownloadError(f"could not download {url}: {reason}") from e


def _download(url: str, target: Path, expected: str | None, progress: bool,
              max_bytes: int = DEFAULT_MAX_BYTES, allow_hosts: set[str] = frozenset(),
              check=(None, None)) -> None:
    """Stream `url` into a temporary file next to `target`, check it, move it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _open_url(url, allow_hosts) as response:
            length = response.headers.get("Content-Length")
            length = length.strip() if length else None
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise DownloadError(
                    f"refusing to download {url}: its Content-Length is {total} bytes, above "
                    f"the limit of {max_bytes} bytes (raise it with max_bytes= or "
                    f"${MAX_BYTES_ENV})"
                )
            received = 0
            label = target.name.split("-", 1)[-1]
            with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                      disable=not progress, leave=False) as bar:
                while True:
                    try:
                        chunk = response.read(min(_CHUNK_BYTES, max_bytes - received + 1))
                    except (OSError, http.client.HTTPException) as e:
                        raise DownloadError(
                            f"download of {url} was interrupted after {received} bytes: {e!r}"
                        ) from e
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > max_bytes:
                        raise DownloadError(
                            f"aborted the download of {url}: it sent more than the limit of "
                            f"{max_bytes} bytes (raise it with max_bytes= or ${MAX_BYTES_ENV}); "
                            f"nothing was cached"
                        )
                    out.write(chunk)
                    digest.update(chunk)
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
        if expected is None:
            _check_unverified(url, Path(tmp_name), total, check)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _check_unverified(url: str, path: Path, total: int | None, check) -> None:
    """A download no SHA-256 vouches for must parse as its expected format; without a known
    format it needs at least a Content-Length it matched."""
    name, validate = check
    if validate is None:
        if total is None:
            raise DownloadError(
                f"refusing to cache {url}: the server sent no Content-Length, no sha256= was "
                f"given and its format is unknown, so nothing shows the download is complete; "
                f"pass sha256= (or expect=)"
            )
        return
    try:
        validate(path)
    except ValueError as e:
        detail = str(e).replace(str(path), "the download")
        raise DownloadError(
            f"refusing to cache {url}: it does not parse as {name} ({detail}); it may be cut "
            f"short or not what was expected; nothing was cached"
        ) from None
