"""lucid_ifv.compat.misc.io: Lucid's show / load / save on the project's safe file code."""

from __future__ import annotations

import functools
import http.server
import os
import sys
import threading
import types

import numpy as np
import pytest
from PIL import Image

from lucid_ifv.compat.misc import io as lio
from lucid_ifv.compat.misc.io import load, save, show
from lucid_ifv.imageio import quantize_8bit


def _image(h=5, w=7, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, c)).astype(np.float32)


def _no_temp_files(folder) -> bool:
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("ext", [".png", ".PNG"])
def test_png_round_trip_float_is_exact_8bit(tmp_path, ext):
    x = _image()
    result = save(x, tmp_path / f"sub/a{ext}")
    assert result == {"type": "image", "shape": (7, 5, 3), "url": str(tmp_path / f"sub/a{ext}")}
    y = load(tmp_path / f"sub/a{ext}")
    assert y.dtype == np.float32 and y.shape == (5, 7, 3)
    np.testing.assert_array_equal(y, quantize_8bit(x))
    assert _no_temp_files(tmp_path / "sub")
    mask = os.umask(0o022)
    os.umask(mask)
    for name in (f"sub/a{ext}", "b.json"):
        save({}, tmp_path / "b.json")
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would, not 0600


def test_png_round_trip_uint8_and_grey(tmp_path):
    u = np.random.default_rng(1).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    save(u, tmp_path / "u.png")
    np.testing.assert_array_equal(load(str(tmp_path / "u.png")), u / np.float32(255))
    grey = _image(c=1)[..., 0]
    save(grey, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L"
    y = load(tmp_path / "g.png")
    assert y.shape == (5, 7, 3)  # Lucid repeats greyscale into RGB
    np.testing.assert_array_equal(y, np.repeat(quantize_8bit(grey)[..., None], 3, -1))
    save(u[None], tmp_path / "b1.png")  # a batch of one is an image
    np.testing.assert_array_equal(load(tmp_path / "b1.png"), u / np.float32(255))


def test_png_rgba(tmp_path):
    x = _image(c=4)
    save(x, tmp_path / "t.png")
    with Image.open(tmp_path / "t.png") as im:
        assert im.mode == "RGBA"
    with pytest.raises(ValueError, match="transparent"):
        load(tmp_path / "t.png")
    x[..., 3] = 1.0
    save(x, tmp_path / "o.png")
    np.testing.assert_array_equal(load(tmp_path / "o.png"), quantize_8bit(x[..., :3]))


@pytest.mark.parametrize("ext", [".jpg", ".jpeg"])
def test_jpeg_round_trip(tmp_path, ext):
    yy, xx = np.mgrid[0:32, 0:48] / 48.0
    x = np.stack([yy, xx, 0.5 * np.ones_like(xx)], -1)  # smooth, so JPEG is close
    save(x, tmp_path / f"a{ext}", quality=95)
    with open(tmp_path / f"a{ext}", "rb") as fh:
        assert fh.read(3) == b"\xff\xd8\xff"
    y = load(tmp_path / f"a{ext}")
    assert y.shape == (32, 48, 3) and y.dtype == np.float32
    assert np.abs(y - x).mean() < 0.02


def test_npy_round_trip(tmp_path):
    for i, arr in enumerate([_image(), np.arange(12).reshape(3, 4), np.array([True, False]), np.float64(3.5)]):
        result = save(arr, tmp_path / f"a{i}.npy")
        assert result["type"] == "npy" and result["shape"] == np.shape(arr)
        out = load(tmp_path / f"a{i}.npy")
        assert out.dtype == np.asarray(arr).dtype
        np.testing.assert_array_equal(out, arr)


def test_npz_round_trip(tmp_path):
    a, b = _image(), np.arange(5)
    save({"a": a, "b": b}, tmp_path / "d.npz")
    out = load(tmp_path / "d.npz")
    assert sorted(out) == ["a", "b"]
    np.testing.assert_array_equal(out["a"], a)
    np.testing.assert_array_equal(out["b"], b)
    save([a, b], tmp_path / "l.npz")
    out = load(tmp_path / "l.npz")
    assert sorted(out) == ["arr_0", "arr_1"]
    np.testing.assert_array_equal(out["arr_1"], b)
    save(a, tmp_path / "s.npz")
    np.testing.assert_array_equal(load(tmp_path / "s.npz")["arr_0"], a)


def test_json_round_trip(tmp_path):
    thing = {"n": np.int64(3), "x": np.float32(0.5), "arr": np.arange(3), "t": (1, 2), "s": {7},
             "ok": np.bool_(True), "nested": [{"a": None}]}
    assert save(thing, tmp_path / "a.json")["type"] == "json"
    assert load(tmp_path / "a.json") == {"n": 3, "x": 0.5, "arr": [0, 1, 2], "t": [1, 2], "s": [7],
                                         "ok": True, "nested": [{"a": None}]}
    assert (tmp_path / "a.json").read_text().startswith("{\n  ")  # Lucid's indent=2


def test_text_round_trip_and_strings_under_any_extension(tmp_path):
    save("héllo\nworld", tmp_path / "a.txt")
    assert load(tmp_path / "a.txt") == "héllo\nworld"
    assert load(tmp_path / "a.txt", split=True) == ["héllo", "world"]
    save(["one", "two\n"], tmp_path / "l.md")
    assert (tmp_path / "l.md").read_text() == "one\ntwo\n"
    save("", tmp_path / "empty.txt")
    assert load(tmp_path / "empty.txt") == ""
    save("<b>hi</b>", tmp_path / "page.html")  # Lucid's save_str
    assert (tmp_path / "page.html").read_text() == "<b>hi</b>"


def test_file_urls_and_lists(tmp_path):
    x = _image()
    save(x, (tmp_path / "a.png").as_uri())
    save([1, 2], f"file://{tmp_path / 'b.json'}")
    assert load(f"file://{tmp_path / 'b.json'}") == [1, 2]
    out = load([(tmp_path / "a.png").as_uri(), str(tmp_path / "b.json")])
    np.testing.assert_array_equal(out[0], quantize_8bit(x))
    assert out[1] == [1, 2]


def test_save_is_atomic(tmp_path):
    target = tmp_path / "a.json"
    save({"v": 1}, target)
    with pytest.raises(TypeError, match="object"):
        save({"v": object()}, target)
    assert load(target) == {"v": 1}
    assert _no_temp_files(tmp_path)


def test_domain(tmp_path):
    x = np.linspace(0.25, 0.75, 12).reshape(3, 4, 1)
    save(x, tmp_path / "stretched.png", domain=None)  # Lucid's save default: min..max
    y = load(tmp_path / "stretched.png")[..., 0]
    assert y.min() == 0.0 and y.max() == 1.0
    save(x * 10 - 5, tmp_path / "d.png", domain=(-5, 5))
    np.testing.assert_array_equal(load(tmp_path / "d.png")[..., :1], quantize_8bit(x))
    save(np.full((2, 2), 1.5), tmp_path / "clip.png")  # clipped to the domain, as Lucid
    np.testing.assert_array_equal(load(tmp_path / "clip.png"), 1.0)


# ------------------------------------------------------------------------------------ show


def _shown(capsys, tmp_path):
    out = capsys.readouterr().out
    files = sorted(tmp_path.glob("show-*.png"))
    assert len(files) == 1, files
    assert str(files[0]) in out
    with Image.open(files[0]) as im:
        return files[0], np.asarray(im)


def test_show_writes_a_png_outside_ipython(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    x = _image()
    path = show(x)
    written, pixels = _shown(capsys, tmp_path)
    assert path == written
    np.testing.assert_array_equal(pixels, np.round(x * 255).astype(np.uint8))
    assert _no_temp_files(tmp_path)


def test_show_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(lio.SHOW_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    path = show(_image(c=1)[..., 0])
    assert path.parent == tmp_path.joinpath(lio.DEFAULT_SHOW_DIR).relative_to(tmp_path)
    assert (tmp_path / path).is_file()


def test_show_batch_is_one_image_with_b_tiles(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    b, h, w = 4, 5, 7
    batch = np.random.default_rng(0).random((b, h, w, 3))
    show(batch)
    _, pixels = _shown(capsys, tmp_path)
    gap = lio.GAP
    assert pixels.shape == (h, b * w + (b - 1) * gap, 3)
    for i in range(b):
        x0 = i * (w + gap)
        np.testing.assert_array_equal(pixels[:, x0:x0 + w], np.round(batch[i] * 255))
        if i < b - 1:
            assert (pixels[:, x0 + w:x0 + w + gap] == 255).all()


def test_show_grid_width_list_and_uint8(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    batch = (np.random.default_rng(0).random((5, 4, 6, 1)) * 255).astype(np.uint8)
    show(batch, ncols=2, w=12)  # tiles scaled 2x (nearest), 3 rows of 2
    path, pixels = _shown(capsys, tmp_path)
    gap = lio.GAP
    assert pixels.shape == (3 * 8 + 2 * gap, 2 * 12 + gap)
    tile = np.repeat(np.repeat(batch[3, ..., 0], 2, 0), 2, 1)
    np.testing.assert_array_equal(pixels[8 + gap:16 + gap, 12 + gap:], tile)
    path.unlink()
    show([_image(3, 3), _image(5, 2, c=4)])  # a list of different sizes and channels
    _, pixels = _shown(capsys, tmp_path)
    assert pixels.shape == (5, 3 + gap + 2, 4)


def test_show_inline_in_an_ipython_kernel(tmp_path, monkeypatch):
    shown = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    display = types.ModuleType("IPython.display")
    display.HTML = lambda html: ("HTML", html)
    display.display = shown.append
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    assert show(np.zeros((3, 4, 5, 3)), labels=["a", "b", "<c>"], w=40) is None
    assert show(_image()) is None
    assert not list(tmp_path.iterdir())  # nothing written
    (kind, html), (_, single) = shown
    assert kind == "HTML" and html.count("<img ") == 3 and "&lt;c&gt; <br/>" in html and "width: 40px;" in html
    assert single.count("<img ") == 1 and single.startswith('<img src="data:image/PNG;base64,')


def test_show_in_a_terminal_ipython_writes_a_file(tmp_path, monkeypatch, capsys):
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace()  # a shell without a kernel
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    show(_image())
    _shown(capsys, tmp_path)


@pytest.mark.parametrize("thing, error, match", [
    ("hello", TypeError, "show: expected an image"),
    (np.zeros(5), ValueError, r"got shape \(5,\)"),
    (np.zeros((2, 3, 4, 5, 3)), ValueError, "got shape"),
    (np.zeros((3, 4, 5)), ValueError, "C = 1, 3 or 4"),
    (np.zeros((0, 4, 5, 3)), ValueError, "empty"),
    ([], ValueError, "empty list"),
    (np.full((3, 3), np.nan), ValueError, "non-finite"),
    (np.zeros((3, 3), np.int64), TypeError, "int64"),
])
def test_show_bad_inputs(tmp_path, monkeypatch, thing, error, match):
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    with pytest.raises(error, match=match):
        show(thing)
    assert not list(tmp_path.iterdir())


def test_show_bad_options(tmp_path, monkeypatch):
    monkeypatch.setenv(lio.SHOW_DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="domain"):
        show(_image(), domain=(1, 0))
    with pytest.raises(ValueError, match="w must be"):
        show(_image(), w=0)
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        show(np.zeros((3, 2, 2, 3)), labels=["a", "b"])


# --------------------------------------------------------------------- refusals and errors


def test_load_refuses_pickles(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled"):
        load(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", ok=np.arange(3), bad=np.array([None], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        load(tmp_path / "obj.npz")
    (tmp_path / "x.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ValueError, match="pickles"):
        load(tmp_path / "x.pkl")
    with pytest.raises(ValueError, match="allow_unsafe_formats"):
        load(tmp_path / "obj.npy", allow_unsafe_formats=True)
    with pytest.raises(TypeError, match="dtype object"):
        save(np.array([{}], dtype=object), tmp_path / "o.npy")
    with pytest.raises(ValueError, match="pickles"):
        save({}, tmp_path / "o.pickle")


@pytest.mark.parametrize("call, error, match", [
    (lambda d: load(d / "a.xyz"), ValueError, r"unknown extension '\.xyz'"),
    (lambda d: load(d / "noext"), ValueError, "no file extension"),
    (lambda d: load(d / "missing.png"), FileNotFoundError, "no image file at"),
    (lambda d: load(d / "missing.json"), FileNotFoundError, "no file at"),
    (lambda d: load("ftp://host/a.png"), ValueError, "unsupported scheme 'ftp'"),
    (lambda d: load(42), TypeError, "path or URL string, got int"),
    (lambda d: save(np.zeros((2, 2)), d / "a.xyz"), ValueError, r"unknown extension '\.xyz'"),
    (lambda d: save(np.zeros((2, 2)), "https://example.com/a.png"), ValueError, "local files only"),
    (lambda d: save(np.zeros((2, 4, 4, 3)), d / "a.png"), ValueError, r"got shape \(2, 4, 4, 3\)"),
    (lambda d: save(np.zeros((4, 4, 2)), d / "a.png"), ValueError, "C = 1, 3 or 4"),
    (lambda d: save(np.zeros((4, 4, 4)), d / "a.jpg"), ValueError, "no alpha"),
    (lambda d: save(np.zeros((4, 4), np.int32), d / "a.png"), TypeError, "int32"),
    (lambda d: save(np.full((4, 4), np.inf), d / "a.png"), ValueError, "non-finite"),
    (lambda d: save(np.zeros((4, 4)), d / "a.jpg", quality=0), ValueError, "quality"),
    (lambda d: save(42, d / "a.txt"), TypeError, "string or a list of strings"),
    (lambda d: save({1: np.zeros(2)}, d / "a.npz"), ValueError, "entry name 1"),
    (lambda d: save(object(), d / "a.json"), TypeError, "as JSON"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)


def test_corrupt_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    save(np.zeros((2, 2)), tmp_path / "real.npy")
    os.replace(tmp_path / "real.npy", tmp_path / "fake.png")
    for name, match in [("bad.png", "not a PNG"), ("bad.json", "not valid JSON"), ("bad.npz", "not a readable .npz"),
                        ("bad.txt", "not utf-8 text"), ("fake.png", "not a PNG")]:
        with pytest.raises(ValueError, match=match) as info:
            load(tmp_path / name)
        assert "\n" not in str(info.value)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        load(tmp_path / "folder.json")


# ---------------------------------------------------------------------------------- remote


@pytest.fixture
def served(tmp_path):
    """A local HTTP server for ``tmp_path / "www"`` (127.0.0.1, own port)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_load_http_through_the_safe_downloader(tmp_path, served):
    from modelzoo.fetch import DownloadError

    root, url = served
    x = _image()
    save(x, root / "a.png")
    save({"k": [1]}, root / "a.json")
    save({"a": np.arange(3)}, root / "a.npz")
    cache = tmp_path / "cache"
    np.testing.assert_array_equal(load(f"{url}/a.png", cache_dir=cache), quantize_8bit(x))
    assert load(f"{url}/a.json", cache_dir=cache) == {"k": [1]}
    np.testing.assert_array_equal(load(f"{url}/a.npz", cache_dir=cache)["a"], np.arange(3))
    assert len(list(cache.glob("*-a.*"))) == 3
    (root / "b.png").write_bytes(b"<html>not an image</html>")
    with pytest.raises(DownloadError, match="PNG or JPEG image"):
        load(f"{url}/b.png", cache_dir=cache)
    assert not list(cache.glob("*-b.png"))  # nothing cached
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load(f"{url}/a.json", cache_dir=tmp_path / "cache2", sha256="0" * 64)
