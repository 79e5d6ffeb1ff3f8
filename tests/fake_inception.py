"""Test support: a small fake InceptionV1 GraphDef and a local HTTP file server.

`build_graph_def()` makes a graph with InceptionV1's node names and op types (as in
TensorFlow's inception5h ``tensorflow_inception_graph.pb``, which Lucid serves):

- weights are Const nodes ``<x>_w`` / ``<x>_b``; a conv is ``<x>_pre_relu/conv`` (Conv2D)
  -> ``<x>_pre_relu`` (BiasAdd) -> ``<x>`` (Relu); dense layers use ``MatMul``;
- ``mixedNx`` are legacy ``Concat`` ops (input 0 is ``concat_dim``) of four branches:
  ``_1x1``, ``_3x3_bottleneck`` -> ``_3x3``, ``_5x5_bottleneck`` -> ``_5x5``,
  ``_pool`` (MaxPool) -> ``_pool_reduce``;
- ``localresponsenorm0/1`` are LRN (depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5);
- the three heads ``head{0,1}_bottleneck`` -> ``nn{0,1}`` -> ``softmax{0,1}`` and
  ``softmax2``, 1008 classes.

Channel counts are InceptionV1's divided by 16 (rounded up), the input is 64x64x3, and the
weights are random with a fixed seed. `FAKE_DEPTHS` lists every layer's depth.
``build_graph_def(divisor=1, size=224)`` builds the same graph at InceptionV1's full channel
counts and input size (`depths` gives the depths for any divisor); the final average pool
covers all of ``mixed5b`` (as InceptionV1's ``avgpool0``), so ``softmax2`` has one row per image.
"""

from __future__ import annotations

import contextlib
import http.server
import math
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

SIZE = 64
CLASSES = 1008
VALUE_RANGE = (-117.0, 138.0)

# InceptionV1's branch widths: 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce.
_MIXED = {
    "mixed3a": (64, 96, 128, 16, 32, 32),
    "mixed3b": (128, 128, 192, 32, 96, 64),
    "mixed4a": (192, 96, 204, 16, 48, 64),
    "mixed4b": (160, 112, 224, 24, 64, 64),
    "mixed4c": (128, 128, 256, 24, 64, 64),
    "mixed4d": (112, 144, 288, 32, 64, 64),
    "mixed4e": (256, 160, 320, 32, 128, 128),
    "mixed5a": (256, 160, 320, 48, 128, 128),
    "mixed5b": (384, 192, 384, 48, 128, 128),
}


DIVISOR = 16


def _small(n: int, divisor: int = DIVISOR) -> int:
    return math.ceil(n / divisor)


def _mixed_depth(name: str, divisor: int = DIVISOR) -> int:
    w = [_small(c, divisor) for c in _MIXED[name]]
    return w[0] + w[2] + w[4] + w[5]


def depths(divisor: int = DIVISOR) -> dict[str, int]:
    """Every layer's depth when InceptionV1's channel counts are divided by `divisor`."""
    return {
        "conv2d0": _small(64, divisor), "conv2d1": _small(64, divisor), "conv2d2": _small(192, divisor),
        **{m: _mixed_depth(m, divisor) for m in _MIXED},
        "head0_bottleneck": _small(128, divisor), "nn0": _small(1024, divisor), "softmax0": CLASSES,
        "head1_bottleneck": _small(128, divisor), "nn1": _small(1024, divisor), "softmax1": CLASSES,
        "softmax2": CLASSES,
    }


FAKE_DEPTHS = depths()


class _Builder:
    def __init__(self, seed: int, legacy_concat: bool, divisor: int = DIVISOR):
        self.rng = np.random.default_rng(seed)
        self.legacy_concat = legacy_concat
        self.divisor = divisor
        self.depths = depths(divisor)

    def _weights(self, name: str, shape, scale: float = 1.0):
        fan_in = int(np.prod(shape[:-1]))
        w = self.rng.normal(0.0, scale * math.sqrt(2.0 / fan_in), shape).astype(np.float32)
        b = self.rng.normal(0.1, 0.05, shape[-1:]).astype(np.float32)
        return tf.constant(w, name=f"{name}_w"), tf.constant(b, name=f"{name}_b")

    def conv(self, x, name: str, k: int, out: int, stride: int = 1, scale: float = 1.0):
        w, b = self._weights(name, (k, k, int(x.shape[-1]), out), scale)
        y = tf.nn.conv2d(x, w, stride, "SAME", name=f"{name}_pre_relu/conv")
        return tf.nn.relu(tf.nn.bias_add(y, b, name=f"{name}_pre_relu"), name=name)

    def dense(self, x, name: str, out: int, suffix: str, activation):
        w, b = self._weights(name, (int(x.shape[-1]), out))
        y = tf.matmul(x, w, name=f"{name}_{suffix}/matmul")
        return activation(tf.nn.bias_add(y, b, name=f"{name}_{suffix}"), name=name)

    def mixed(self, x, name: str):
        c1, c3b, c3, c5b, c5, cp = (_small(c, self.divisor) for c in _MIXED[name])
        branches = [
            self.conv(x, f"{name}_1x1", 1, c1),
            self.conv(self.conv(x, f"{name}_3x3_bottleneck", 1, c3b), f"{name}_3x3", 3, c3),
            self.conv(self.conv(x, f"{name}_5x5_bottleneck", 1, c5b), f"{name}_5x5", 5, c5),
            self.conv(tf.nn.max_pool2d(x, 3, 1, "SAME", name=f"{name}_pool"), f"{name}_pool_reduce", 1, cp),
        ]
        if self.legacy_concat:
            dim = tf.constant(3, name=f"{name}/concat_dim")
            return tf.raw_ops.Concat(concat_dim=dim, values=branches, name=name)
        return tf.concat(branches, 3, name=name)

    def head(self, x, i: int):
        pool = tf.nn.avg_pool2d(x, 2, 2, "VALID", name=f"head{i}_pool")
        bottleneck = self.conv(pool, f"head{i}_bottleneck", 1, self.depths[f"head{i}_bottleneck"])
        flat = tf.reshape(bottleneck, [-1, int(np.prod(bottleneck.shape[1:]))], name=f"head{i}_bottleneck/reshape")
        nn = self.dense(flat, f"nn{i}", self.depths[f"nn{i}"], "pre_relu", tf.nn.relu)
        return self.dense(nn, f"softmax{i}", CLASSES, "pre_activation", tf.nn.softmax)


def _lrn(x, name):
    return tf.nn.local_response_normalization(x, depth_radius=5, bias=2.0, alpha=1e-4, beta=0.5, name=name)


def build_graph_def(seed: int = 0, legacy_concat: bool = True, divisor: int = DIVISOR,
                    size: int = SIZE) -> tf.compat.v1.GraphDef:
    """The fake InceptionV1 GraphDef (input ``input``: float32 ``[?, size, size, 3]``), with
    InceptionV1's channel counts divided by `divisor` (``divisor=1, size=224``: full size)."""
    d = depths(divisor)
    graph = tf.Graph()
    with graph.as_default():
        b = _Builder(seed, legacy_concat, divisor)
        x = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3], name="input")
        x = b.conv(x, "conv2d0", 7, d["conv2d0"], stride=2, scale=1.0 / 128)
        x = _lrn(tf.nn.max_pool2d(x, 3, 2, "SAME", name="maxpool0"), "localresponsenorm0")
        x = b.conv(x, "conv2d1", 1, d["conv2d1"])
        x = b.conv(x, "conv2d2", 3, d["conv2d2"])
        x = tf.nn.max_pool2d(_lrn(x, "localresponsenorm1"), 3, 2, "SAME", name="maxpool1")
        x = b.mixed(b.mixed(x, "mixed3a"), "mixed3b")
        x = b.mixed(tf.nn.max_pool2d(x, 3, 2, "SAME", name="maxpool4"), "mixed4a")
        tf.identity(b.head(x, 0), name="output")
        x = b.mixed(b.mixed(b.mixed(x, "mixed4b"), "mixed4c"), "mixed4d")
        tf.identity(b.head(x, 1), name="output1")
        x = b.mixed(x, "mixed4e")
        x = b.mixed(b.mixed(tf.nn.max_pool2d(x, 3, 2, "SAME", name="maxpool10"), "mixed5a"), "mixed5b")
        x = tf.nn.avg_pool2d(x, int(x.shape[1]), 1, "VALID", name="avgpool0")  # 2x2 at size 64, 7x7 at 224
        x = tf.reshape(x, [-1, d["mixed5b"]], name="head2_bottleneck/reshape")
        tf.identity(b.dense(x, "softmax2", CLASSES, "pre_activation", tf.nn.softmax), name="output2")
    return graph.as_graph_def()


def write(path, seed: int = 0, legacy_concat: bool = True, metadata: dict | None = None) -> Path:
    """Write the fake graph to `path` (optionally with Lucid metadata embedded)."""
    from modelzoo import lucid_format

    graph_def = build_graph_def(seed, legacy_concat)
    if metadata is not None:
        lucid_format.embed_metadata(graph_def, metadata)
    lucid_format.write_graph_def(graph_def, path)
    return Path(path)


def fake_metadata() -> dict:
    """Lucid metadata (with our ``layers``) describing the fake graph."""
    return {
        "name": "FakeInceptionV1",
        "input_name": "input",
        "image_shape": [SIZE, SIZE, 3],
        "image_value_range": list(VALUE_RANGE),
        "layers": [
            {"name": n, "depth": d, "tags": ["dense" if n.startswith(("nn", "softmax")) else "conv"]}
            for n, d in FAKE_DEPTHS.items()
        ],
    }


# -- a local HTTP server --------------------------------------------------------------------


class FileServer:
    """Serves `files` (url path -> bytes) on 127.0.0.1 from a thread; counts requests.

    Special behaviours by path: a path in `truncate` sends the full Content-Length but only
    half the body, then closes; a path in `chunked_cut` sends a chunked body and closes
    mid-stream. Unknown paths get 404.
    """

    def __init__(self, files: dict[str, bytes], truncate=(), chunked_cut=()):
        self.files = dict(files)
        self.truncate = set(truncate)
        self.chunked_cut = set(chunked_cut)
        self.hits: dict[str, int] = {}
        self.delay = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if server.delay:
                    threading.Event().wait(server.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if self.path in server.chunked_cut:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = body[: len(body) // 2]
                    self.wfile.write(f"{len(body):x}\r\n".encode() + half)
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if self.path in server.truncate else body)
                self.wfile.flush()
                if self.path in server.truncate | server.chunked_cut:
                    self.close_connection = True

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@contextlib.contextmanager
def serve(files: dict[str, bytes], **kwargs):
    """Context manager: a running `FileServer`."""
    with FileServer(files, **kwargs) as server:
        yield server
