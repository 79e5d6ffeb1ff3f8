"""modelzoo.fetch: local sources, gs:// mapping, downloads against a local HTTP server."""

from __future__ import annotations

import hashlib
import threading

import pytest

from fake_inception import serve
from modelzoo import fetch

BODY = bytes(range(256)) * 1024  # 256 KiB: several chunks
BODY_SHA = hashlib.sha256(BODY).hexdigest()


def cache_files(cache_dir):
    """Everything in the cache except the lock directory."""
    return sorted(p.name for p in cache_dir.iterdir() if p.name != ".locks") if cache_dir.exists() else []


# -- pure URL functions -------------------------------------------------------------------


def test_gs_maps_to_the_public_https_endpoint():
    assert (
        fetch.gs_to_https("gs://modelzoo/vision/other_models/InceptionV1.pb")
        == "https://storage.googleapis.com/modelzoo/vision/other_models/InceptionV1.pb"
    )
    assert fetch.gs_to_https("https://example.com/a.pb") == "https://example.com/a.pb"
    assert fetch.gs_to_https("/local/a.pb") == "/local/a.pb"
    for bad in ("gs://bucket-only", "gs:///path/only.pb"):
        with pytest.raises(ValueError, match="gs://<bucket>/<path>"):
            fetch.gs_to_https(bad)


def test_cache_path_keeps_the_basename_and_separates_urls(tmp_path, monkeypatch):
    a = fetch.cache_path("https://host/x/InceptionV1.pb", tmp_path)
    b = fetch.cache_path("https://host/y/InceptionV1.pb", tmp_path)
    assert a.parent == tmp_path and a.name.endswith("-InceptionV1.pb") and a != b
    assert fetch.cache_path("gs://b/x/m.pb", tmp_path) == fetch.cache_path(
        "https://storage.googleapis.com/b/x/m.pb", tmp_path
    )
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "env"))
    assert fetch.default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv(fetch.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert fetch.default_cache_dir() == tmp_path / "home" / ".cache" / "lucid-ifv"


def test_join_reads_relative_paths_against_the_base():
    assert fetch.join("gs://b/models/m/manifest.json", "graph.pb") == (
        "https://storage.googleapis.com/b/models/m/graph.pb"
    )
    assert fetch.join("http://h/m/manifest.json", "./g.pb") == "http://h/m/g.pb"
    assert fetch.join("/data/m/manifest.json", "graph.pb") == "/data/m/graph.pb"
    assert fetch.join("/data/m/manifest.json", "https://h/g.pb") == "https://h/g.pb"


# -- local sources -----------------------------------------------------------------------------


def test_local_paths_and_file_urls(tmp_path):
    f = tmp_path / "model.pb"
    f.write_bytes(BODY)
    assert fetch.resolve(f) == f
    assert fetch.resolve(str(f), sha256=BODY_SHA) == f
    assert fetch.resolve(f.as_uri()) == f
    with pytest.raises(FileNotFoundError, match="missing.pb"):
        fetch.resolve(tmp_path / "missing.pb")
    with pytest.raises(FileNotFoundError, match="missing.pb"):
        fetch.resolve((tmp_path / "missing.pb").as_uri())
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {BODY_SHA}"):
        fetch.resolve(f, sha256="0" * 64)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unsupported source 'ftp://h/m.pb'"):
        fetch.resolve("ftp://h/m.pb")
    with pytest.raises(ValueError, match="64 hexadecimal digits, got 'abc'"):
        fetch.resolve(tmp_path, sha256="abc")
    with pytest.raises(TypeError):
        fetch.resolve(3)


# -- downloads ---------------------------------------------------------------------------------
# BODY is not a GraphDef, so it is served as ``.bin`` (format unknown: its Content-Length is
# what shows it complete); unverified ``.pb`` downloads must parse (tests/test_fetch_safety.py).


def test_download_once_then_cache_hit(tmp_path):
    cache = tmp_path / "cache"
    with serve({"/m/model.bin": BODY}) as server:
        url = server.url + "/m/model.bin"
        first = fetch.resolve(url, cache_dir=cache, progress=False)
        second = fetch.resolve(url, cache_dir=cache, sha256=BODY_SHA, progress=False)
    assert first == second == fetch.cache_path(url, cache)
    assert first.read_bytes() == BODY
    assert server.hits == {"/m/model.bin": 1}
    assert cache_files(cache) == [first.name]


def test_env_cache_dir_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "envcache"))
    with serve({"/a.bin": BODY}) as server:
        path = fetch.resolve(server.url + "/a.bin", progress=False)
    assert path.parent == tmp_path / "envcache"


def test_sha256_mismatch_leaves_nothing(tmp_path):
    cache = tmp_path / "cache"
    wrong = "f" * 64
    with serve({"/model.bin": BODY}) as server:
        with pytest.raises(ValueError) as info:
            fetch.resolve(server.url + "/model.bin", cache_dir=cache, sha256=wrong, progress=False)
    assert wrong in str(info.value) and BODY_SHA in str(info.value)
    assert cache_files(cache) == []


def test_stale_cached_copy_is_replaced_when_the_hash_disagrees(tmp_path):
    cache = tmp_path / "cache"
    with serve({"/model.bin": BODY}) as server:
        url = server.url + "/model.bin"
        target = fetch.cache_path(url, cache)
        cache.mkdir()
        target.write_bytes(b"an older file")
        assert fetch.resolve(url, cache_dir=cache, progress=False).read_bytes() == b"an older file"
        assert fetch.resolve(url, cache_dir=cache, sha256=BODY_SHA, progress=False).read_bytes() == BODY
    assert server.hits == {"/model.bin": 1}


@pytest.mark.parametrize("mode", ["truncate", "chunked_cut"])
def test_interrupted_download_leaves_no_partial_file(tmp_path, mode):
    cache = tmp_path / "cache"
    with serve({"/model.bin": BODY}, **{mode: ["/model.bin"]}) as server:
        url = server.url + "/model.bin"
        with pytest.raises(fetch.DownloadError, match="model.bin"):
            fetch.resolve(url, cache_dir=cache, progress=False)
        assert cache_files(cache) == []
        # The next attempt starts from scratch (and fails the same way), nothing cached.
        with pytest.raises(fetch.DownloadError):
            fetch.resolve(url, cache_dir=cache, progress=False)
    assert server.hits["/model.bin"] == 2
    assert cache_files(cache) == []


def test_exception_mid_stream_leaves_no_partial_file(tmp_path, monkeypatch):
    class ExplodingBar:
        def __init__(self, *args, **kwargs):
            self.calls = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.calls += 1
            if self.calls == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "tqdm", ExplodingBar)
    cache = tmp_path / "cache"
    with serve({"/model.bin": BODY}) as server:
        with pytest.raises(KeyboardInterrupt):
            fetch.resolve(server.url + "/model.bin", cache_dir=cache)
    assert cache_files(cache) == []


def test_http_errors_are_clear(tmp_path):
    with serve({}) as server:
        url = server.url + "/nothing.pb"
        with pytest.raises(fetch.DownloadError, match=r"HTTP error 404 .* " + url):
            fetch.resolve(url, cache_dir=tmp_path, progress=False)
    # The server is gone: connection refused.
    with pytest.raises(fetch.DownloadError, match="could not download " + url):
        fetch.resolve(url, cache_dir=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


def test_concurrent_resolves_download_once(tmp_path):
    cache = tmp_path / "cache"
    results, errors = [], []
    with serve({"/model.bin": BODY}) as server:
        server.delay = 0.3
        url = server.url + "/model.bin"

        def worker():
            try:
                results.append(fetch.resolve(url, cache_dir=cache, progress=False))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(set(results)) == 1 and results[0].read_bytes() == BODY
    assert server.hits == {"/model.bin": 1}
