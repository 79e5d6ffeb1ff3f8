"""modelzoo.fetch against hostile servers (local, 127.0.0.1): redirects, size limits, lying
or missing Content-Length, stale partial downloads, pinned hashes, and remote manifests that
point elsewhere."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
import time

import fake_inception as fi
import pytest

from modelzoo import fetch
from modelzoo.graph import load_model

CAP = 64 * 1024  # a small download limit for the tests
BODY = bytes(range(256)) * 64  # 16 KiB, not a GraphDef
BODY_SHA = hashlib.sha256(BODY).hexdigest()


# -- a scriptable local server -------------------------------------------------------------------


class Server:
    """127.0.0.1 on its own port; `routes` maps a path to ``respond(handler)``. Counts hits
    and the body bytes each path managed to send."""

    def __init__(self, routes: dict):
        self.routes = dict(routes)
        self.hits: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                respond = server.routes.get(self.path)
                if respond is None:
                    self.send_error(404, "Not Found")
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    respond(self)

            def write(self, data: bytes):
                self.wfile.write(data)
                server.sent[self.path] = server.sent.get(self.path, 0) + len(data)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def body(data: bytes, length: int | None | str = "exact"):
    """Send `data`; Content-Length is its length ("exact"), a given number (a lie), or absent
    (None: the body ends when the connection closes)."""
    def respond(h):
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        if length is None:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(len(data) if length == "exact" else length))
        h.end_headers()
        h.write(data)
    return respond


def redirect(location: str, code: int = 302):
    def respond(h):
        h.send_response(code)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return respond


def endless(length: int | None = None, chunk: int = 4096, pause: float = 0.0):
    """Stream zeros until the client hangs up (or 30 s), after headers claiming `length`."""
    def respond(h):
        h.send_response(200)
        if length is None:
            h.send_header("Connection", "close")
            h.close_connection = True
        else:
            h.send_header("Content-Length", str(length))
        h.end_headers()
        h.wfile.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not h.server_release.is_set():
            if pause:
                time.sleep(pause)
            h.write(b"\0" * chunk)
    return respond


@contextlib.contextmanager
def serve(routes):
    with Server(routes) as server:
        # endless() needs the release flag on the handler
        for path, respond in list(server.routes.items()):
            server.routes[path] = _with_release(respond, server.release)
        yield server


def _with_release(respond, event):
    def wrapped(h):
        h.server_release = event
        respond(h)
    return wrapped


def cache_files(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir() if p.name != ".locks") if cache_dir.exists() else []


@pytest.fixture(scope="module")
def graph_bytes(tmp_path_factory):
    return fi.write(tmp_path_factory.mktemp("g") / "g.pb", metadata=fi.fake_metadata()).read_bytes()


# -- redirects -----------------------------------------------------------------------------------


def test_redirect_on_the_same_host_is_followed(tmp_path):
    with serve({"/old.bin": redirect("/new.bin"), "/new.bin": body(BODY)}) as server:
        path = fetch.resolve(server.url + "/old.bin", tmp_path, progress=False)
    assert path.read_bytes() == BODY and path == fetch.cache_path(server.url + "/old.bin", tmp_path)
    assert server.hits == {"/old.bin": 1, "/new.bin": 1}


def test_redirect_to_another_port_is_refused_unless_allowed(tmp_path):
    with serve({"/m.bin": body(BODY)}) as other:
        with serve({"/m.bin": redirect(other.url + "/m.bin", 301)}) as server:
            with pytest.raises(fetch.DownloadError) as info:
                fetch.resolve(server.url + "/m.bin", tmp_path, progress=False)
            message = str(info.value)
            assert "\n" not in message
            assert f"refusing the redirect (HTTP 301) from {server.url}/m.bin to {other.url}/m.bin" in message
            assert f"allow_hosts=['127.0.0.1:{other.port}']" in message
            assert other.hits == {} and cache_files(tmp_path) == []
            path = fetch.resolve(server.url + "/m.bin", tmp_path, progress=False,
                                 allow_hosts=[f"127.0.0.1:{other.port}"])
            assert path.read_bytes() == BODY and other.hits == {"/m.bin": 1}


def test_redirect_to_another_host_name_or_a_local_file_is_refused(tmp_path):
    targets = ["http://localhost:1/m.bin", "file:///etc/passwd", "https://127.0.0.1/m.bin"]
    routes = {f"/r{i}.bin": redirect(t) for i, t in enumerate(targets)}
    with serve(routes) as server:
        for i, target in enumerate(targets):
            with pytest.raises(fetch.DownloadError, match=f"refusing the redirect .* to {target}: downloads "
                                                          f"follow redirects only to the same host"):
                fetch.resolve(f"{server.url}/r{i}.bin", tmp_path, progress=False)
    assert cache_files(tmp_path) == []


# -- size limit ----------------------------------------------------------------------------------


def test_content_length_above_the_limit_is_refused_before_reading(tmp_path):
    with serve({"/huge.bin": endless(length=10 * CAP, pause=0.5)}) as server:
        start = time.monotonic()
        with pytest.raises(fetch.DownloadError) as info:
            fetch.resolve(server.url + "/huge.bin", tmp_path, progress=False, max_bytes=CAP)
        elapsed = time.monotonic() - start
    message = str(info.value)
    assert f"its Content-Length is {10 * CAP} bytes, above the limit of {CAP} bytes" in message
    assert "max_bytes=" in message and fetch.MAX_BYTES_ENV in message and "\n" not in message
    assert elapsed < 5  # the body (which would take > 1 min) was never read
    assert cache_files(tmp_path) == []


def test_a_body_streaming_past_the_limit_is_aborted(tmp_path):
    with serve({"/stream.bin": endless(length=None)}) as server:
        with pytest.raises(fetch.DownloadError, match=f"sent more than the limit of {CAP} bytes"):
            fetch.resolve(server.url + "/stream.bin", tmp_path, progress=False, max_bytes=CAP)
    assert cache_files(tmp_path) == []


def test_a_server_lying_about_content_length(tmp_path, graph_bytes):
    """Claims 1000 bytes (under the limit) and sends 50x the limit: the client reads what was
    claimed and no more; what it got neither matches a hash nor parses as a graph."""
    routes = {"/lie.bin": body(b"x" * (50 * CAP), length=1000),
              "/lie.pb": body(graph_bytes + b"\0" * (50 * CAP), length=1000),
              "/short.pb": body(graph_bytes[:1000], length=len(graph_bytes))}
    with serve(routes) as server:
        with pytest.raises(ValueError, match="sha256 mismatch"):
            fetch.resolve(server.url + "/lie.bin", tmp_path, sha256=BODY_SHA, progress=False, max_bytes=CAP)
        with pytest.raises(fetch.DownloadError, match=r"lie.pb: it does not parse as a GraphDef"):
            fetch.resolve(server.url + "/lie.pb", tmp_path, progress=False, max_bytes=CAP)
        with pytest.raises(fetch.DownloadError, match=f"received 1000 of {len(graph_bytes)} bytes"):
            fetch.resolve(server.url + "/short.pb", tmp_path, progress=False)
    assert cache_files(tmp_path) == []


def test_the_limit_is_configurable(tmp_path, monkeypatch):
    monkeypatch.delenv(fetch.MAX_BYTES_ENV, raising=False)
    assert fetch.max_download_bytes() == fetch.DEFAULT_MAX_BYTES == 2**30
    monkeypatch.setenv(fetch.MAX_BYTES_ENV, str(len(BODY) - 1))
    assert fetch.max_download_bytes() == len(BODY) - 1
    with serve({"/m.bin": body(BODY)}) as server:
        with pytest.raises(fetch.DownloadError, match=f"above the limit of {len(BODY) - 1} bytes"):
            fetch.resolve(server.url + "/m.bin", tmp_path, progress=False)
        assert fetch.resolve(server.url + "/m.bin", tmp_path, progress=False, max_bytes=len(BODY)).read_bytes() == BODY
    for bad in ("0", "-5", "1.5", "lots"):
        monkeypatch.setenv(fetch.MAX_BYTES_ENV, bad)
        with pytest.raises(ValueError, match=f"{fetch.MAX_BYTES_ENV} must be a positive whole number"):
            fetch.max_download_bytes()
    monkeypatch.delenv(fetch.MAX_BYTES_ENV)
    for bad in (0, -1, 2.5, True, "x"):
        with pytest.raises(ValueError, match="max_bytes must be a positive whole number"):
            fetch.resolve("http://127.0.0.1:1/m.bin", tmp_path, max_bytes=bad)


# -- downloads nothing vouches for -----------------------------------------------------------------


def test_no_content_length_and_garbage_is_not_cached(tmp_path, graph_bytes):
    cache = tmp_path / "cache"
    routes = {"/garbage.pb": body(b"\xff\xfe not a protobuf \x00" * 50, length=None),
              "/cut.pb": body(graph_bytes[: len(graph_bytes) // 2], length=None),
              "/good.pb": body(graph_bytes, length=None),
              "/unknown.bin": body(BODY, length=None),
              "/labels.txt": body(b"a\nb\n", length=None),
              "/binary.txt": body(b"\x00\x01\xff", length=None)}
    with serve(routes) as server:
        for name in ("garbage.pb", "cut.pb"):
            with pytest.raises(fetch.DownloadError, match=f"refusing to cache {server.url}/{name}: it does "
                                                          f"not parse as a GraphDef .*nothing was cached"):
                fetch.resolve(f"{server.url}/{name}", cache, progress=False)
        assert cache_files(cache) == []
        good = fetch.resolve(server.url + "/good.pb", cache, progress=False)
        assert good.read_bytes() == graph_bytes
        with pytest.raises(fetch.DownloadError, match="no Content-Length, no sha256= was given and its format is unknown"):
            fetch.resolve(server.url + "/unknown.bin", cache, progress=False)
        assert fetch.resolve(server.url + "/unknown.bin", cache, sha256=BODY_SHA, progress=False).read_bytes() == BODY
        assert fetch.resolve(server.url + "/labels.txt", cache, progress=False).read_text() == "a\nb\n"
        with pytest.raises(fetch.DownloadError, match="binary.txt: it does not parse as UTF-8 text"):
            fetch.resolve(server.url + "/binary.txt", cache, progress=False)
        # expect= overrides the suffix: a ".bin" that must be a graph
        with pytest.raises(fetch.DownloadError, match="does not parse as a GraphDef"):
            fetch.resolve(server.url + "/unknown.bin", tmp_path / "other_cache", expect="graphdef", progress=False)
        with pytest.raises(ValueError, match="expect must be one of graphdef, json, text"):
            fetch.resolve(server.url + "/unknown.bin", cache, expect="onnx")
    assert sorted(n.split("-", 1)[1] for n in cache_files(cache)) == ["good.pb", "labels.txt", "unknown.bin"]


def test_load_model_refuses_a_garbage_graph_without_caching_it(tmp_path):
    with serve({"/m/model.pb": body(b"<html>captive portal</html>" * 40)}) as server:
        with pytest.raises(fetch.DownloadError, match="model.pb: it does not parse as a GraphDef"):
            load_model(server.url + "/m/model.pb", cache_dir=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


# -- stale partial downloads ------------------------------------------------------------------------


def test_stale_part_files_are_cleaned_on_the_next_fetch(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    with serve({"/m.bin": body(BODY)}) as server:
        url = server.url + "/m.bin"
        target = fetch.cache_path(url, cache)
        own = cache / f".{target.name}.k1ll3d_x.part"  # a download of this file that was SIGKILLed
        other = cache / ".0123456789abcdef-other.pb.abcdefgh.part"  # another file's dead download
        busy = cache / ".fedcba9876543210-busy.pb.12345678.part"  # another file, still downloading
        unrelated = cache / ".notes.part"
        for p in (own, other, busy, unrelated):
            p.write_bytes(b"partial")
        with fetch._locked(cache / ".locks" / "fedcba9876543210-busy.pb.lock"):
            path = fetch.resolve(url, cache, progress=False)
        assert path.read_bytes() == BODY
    assert not own.exists() and not other.exists()
    assert busy.exists() and unrelated.exists()
    assert fetch.clean_stale_parts(cache) == [busy]  # its lock is free now


# -- pinned hashes -----------------------------------------------------------------------------------


def test_inception_v1_has_a_pin_slot_and_pins_are_enforced(tmp_path, monkeypatch):
    from modelzoo.vision import InceptionV1

    key = fetch.gs_to_https(InceptionV1.model_path)
    assert key in fetch.PINNED_SHA256
    pin = fetch.PINNED_SHA256[key]
    assert pin is None or (len(pin) == 64 and int(pin, 16) >= 0)  # None until a trusted value exists
    with serve({"/pinned.bin": body(BODY)}) as server:
        url = server.url + "/pinned.bin"
        monkeypatch.setitem(fetch.PINNED_SHA256, url, "0" * 64)
        with pytest.raises(ValueError, match=f"sha256 mismatch for {url}: expected {'0' * 64}, got {BODY_SHA}"):
            fetch.resolve(url, tmp_path, progress=False)
        assert cache_files(tmp_path) == []
        monkeypatch.setitem(fetch.PINNED_SHA256, url, BODY_SHA)
        assert fetch.resolve(url, tmp_path, progress=False).read_bytes() == BODY
        # a cached copy that no longer matches the pin is fetched again
        fetch.cache_path(url, tmp_path).write_bytes(b"tampered")
        assert fetch.resolve(url, tmp_path, progress=False).read_bytes() == BODY
    assert server.hits["/pinned.bin"] == 3  # refused, accepted, re-fetched


# -- remote manifests ---------------------------------------------------------------------------------


def test_manifest_target_rules():
    remote = "https://models.example/zoo/m/manifest.json"
    assert fetch.manifest_target(remote, "graph.pb") == "https://models.example/zoo/m/graph.pb"
    assert fetch.manifest_target(remote, "../shared/g.pb") == "https://models.example/zoo/shared/g.pb"
    assert fetch.manifest_target(remote, "https://models.example/x.pb") == "https://models.example/x.pb"
    assert (fetch.manifest_target("gs://bucket/m/manifest.json", "gs://bucket/other/g.pb")
            == "https://storage.googleapis.com/bucket/other/g.pb")
    for local in ("/etc/passwd", "file:///etc/passwd", "~/.ssh/id_rsa", "C:\\Windows\\x.pb", "\\\\server\\share\\x.pb"):
        with pytest.raises(ValueError, match="it names a local file.*allow_local=True") as info:
            fetch.manifest_target(remote, local)
        assert "\n" not in str(info.value) and remote in str(info.value)
        assert fetch.manifest_target(remote, local, allow_local=True) == local
    for other, shown in (("https://evil.example/g.pb", "evil.example:443"),
                         ("//evil.example/g.pb", "evil.example:443"),
                         ("http://models.example/g.pb", "models.example:80"),
                         ("https://models.example:8443/g.pb", "models.example:8443")):
        with pytest.raises(ValueError, match=f"not the manifest's own host; pass allow_hosts=\\['{shown}'\\]"):
            fetch.manifest_target(remote, other)
        assert fetch.manifest_target(remote, other, allow_hosts=[shown]).endswith("g.pb")
    assert fetch.manifest_target(remote, "https://evil.example/g.pb", allow_hosts="evil.example")
    with pytest.raises(ValueError, match="unsupported scheme 'ftp'"):
        fetch.manifest_target(remote, "ftp://models.example/g.pb")
    for bad in (None, 3, "", "  ", ["graph.pb"]):
        with pytest.raises(ValueError, match="model_path .* must be a non-empty string"):
            fetch.manifest_target(remote, bad)
    # a local manifest is the user's own file: it may name anything
    assert fetch.manifest_target("/data/m/manifest.json", "/elsewhere/g.pb") == "/elsewhere/g.pb"
    assert fetch.manifest_target("/data/m/manifest.json", "https://h/g.pb") == "https://h/g.pb"


def _manifest(model_path: str) -> bytes:
    return json.dumps({"model_path": model_path, "input_name": "input", "image_shape": [64, 64, 3],
                       "image_value_range": [-117, 138], "layers": ["mixed4c"]}).encode()


def test_remote_manifests_stay_on_their_host(tmp_path, graph_bytes):
    local_graph = tmp_path / "local.pb"
    local_graph.write_bytes(graph_bytes)
    with serve({"/graph.pb": body(graph_bytes)}) as other:
        routes = {
            "/zoo/m/graph.pb": body(graph_bytes),
            "/zoo/relative.json": body(_manifest("m/graph.pb")),
            "/zoo/absolute.json": body(_manifest(str(local_graph))),
            "/zoo/etc.json": body(_manifest("/etc/passwd")),
            "/zoo/file.json": body(_manifest(local_graph.as_uri())),
            "/zoo/other.json": body(_manifest(other.url + "/graph.pb")),
            "/zoo/schemeless.json": body(_manifest(f"//127.0.0.1:{other.port}/graph.pb")),
        }
        with serve(routes) as server:
            kw = {"cache_dir": tmp_path / "cache", "progress": False}
            model = load_model(server.url + "/zoo/relative.json", **kw)
            assert [l.name for l in model.layers] == ["mixed4c"]
            assert server.hits["/zoo/m/graph.pb"] == 1
            for name in ("absolute", "etc", "file"):
                with pytest.raises(ValueError, match=f"of remote manifest {server.url}/zoo/{name}.json: it names a local file"):
                    load_model(f"{server.url}/zoo/{name}.json", **kw)
            for name in ("other", "schemeless"):
                with pytest.raises(ValueError, match=f"points at http://127.0.0.1:{other.port}, not the manifest's own host"):
                    load_model(f"{server.url}/zoo/{name}.json", **kw)
            assert other.hits == {}
            # the caller may allow them explicitly
            assert load_model(server.url + "/zoo/absolute.json", allow_local=True, **kw).layers
            assert load_model(server.url + "/zoo/other.json", allow_hosts=[f"127.0.0.1:{other.port}"], **kw).layers
            assert other.hits == {"/graph.pb": 1}
