"""`make bench`: side-by-side speed against Xplique and tf-keras-vis, the Jacobian against
its limit, and the inversion end to end; writes docs/benchmarks.md and its figure.

    python benchmarks/bench_peers.py [--smoke | --full] [--rounds N] [--out docs/benchmarks.md]
        [--fig-dir docs/results/benchmarks] [--sections fv jac cold inv] [--threads 2] [--blas-threads 1]
    python benchmarks/bench_peers.py --from-json docs/results/benchmarks/results.json   # re-write the report

`make bench` runs it in the bench environment (the peers installed there only, see the Makefile).

Every comparison is timed side by side in this one process, in interleaved rounds (each
round runs every contender of a row once, in a rotated order), and reported as the median
over rounds of the per-round ratio. Compiling (tracing) is excluded from the warm figures
and reported on its own. Peak memory and the cold start (the first answer in a fresh
process) are measured in one subprocess per configuration (``--worker``), since neither
can be measured after other work in the same process.

Sections (issue 11; the methods are described in docs/benchmarks.md, written by `report`):

1. ``fv``: feature-visualization steps/s on the shipped Keras model ``photos_cnn``: ours
   (`VisSetup.step`, the compiled Adam step `render_vis` runs), the hand-written compiled
   step on the same parametrization ("floor"), Xplique's ``optimize`` and tf-keras-vis's
   ``ActivationMaximization``.
2. ``jac``: `ifv.feature_jacobian` against a per-feature gradient loop and the "limit"
   (one forward pass + k backward passes at the best measured backward throughput).
3. ``inv``: `ifv.invert` end to end per sample, the share of each stage, and its growth
   with image size, batch and k (log-log slopes).

``--smoke`` runs every code path at tiny sizes (about a minute, most of it TensorFlow start-up and
tracing) into a throw-away
report; the peers are skipped when they are not installed (the package's own venv has
neither). Results of the real run depend on the load of the (shared) machine: the report
records the load average beside every section.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # the sibling benchmarks (bench_jacobian_cold) are imported by name
    sys.path.insert(0, str(HERE))

#: Thread-related environment variables set (when unset) before NumPy / TensorFlow load, and recorded.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL",
              "LUCID_IFV_THREADS", "LUCID_IFV_JACOBIAN_BLOCK_MB")

# -- sizes ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Sizes:
    """Everything the run's duration depends on (`--smoke` shrinks all of it)."""

    rounds: int = 3
    # FV (its rows are short and the noisiest: more rounds)
    fv_rounds: int = 5
    fv_model: str = "photos_cnn"
    fv_layer: str = "conv2d_4"
    fv_batches: tuple = (1, 16)
    #: (param, transforms, batch) rows; None: every param x transforms x batch
    fv_rows: tuple | None = None
    fv_seconds: float = 0.5  # target duration of one timed run of one contender
    fv_min_steps: int = 8
    fv_max_steps: int = 400
    # Jacobian: (name, layer, batch, ks, limit tile c, loop rows timed, ks timed in 1 round only)
    jac_configs: tuple = (
        ("inception_small", "mixed4a", 4, (16, 64, 256), 16, 64, ()),
        ("inceptionv1_224", "mixed4c", 1, (16, 64, 512), 8, 16, (512,)),
    )
    cold_configs: tuple = (  # (name, layer, batch, k, kind): one fresh process each
        ("inception_small", "mixed4a", 4, 256, "jacobian"),
        ("inception_small", "mixed4a", 4, 256, "invert"),
        ("inception_small", "mixed4a", 1, 256, "invert"),  # one image: the interactive case
        ("inceptionv1_224", "mixed4c", 1, 64, "jacobian"),
    )
    iv1_divisor: int = 1
    iv1_size: int = 224
    # inversion sweeps on inception_small (any input size): base and one factor varied at a time
    inv_model: str = "inception_small"
    inv_layer: str = "mixed4a"
    inv_base: tuple = (32, 2, 64)  # (size, batch, k)
    inv_sizes: tuple = (32, 48, 64)
    inv_batches: tuple = (1, 2, 4)
    inv_ks: tuple = (16, 64, 256)
    #: the k = 512 stage shares: on the Jacobian of the jac section's largest config
    inv_large: tuple = ("inceptionv1_224", "mixed4c", 1, 512)
    worker_timeout: float = 900.0


def full_sizes() -> Sizes:
    """``--full``: every k on both models (IV1 k = 256 and 512 each one round) and a cold
    start for every configuration (about twice `make bench`'s time)."""
    return Sizes(
        jac_configs=(("inception_small", "mixed4a", 4, (16, 64, 256), 16, 64, ()),
                     ("inceptionv1_224", "mixed4c", 1, (16, 64, 256, 512), 8, 16, (256, 512))),
        cold_configs=tuple((m, lay, b, k, "jacobian") for m, lay, b, ks in (
            ("inception_small", "mixed4a", 4, (16, 64, 256)), ("inceptionv1_224", "mixed4c", 1, (16, 64, 256, 512)))
            for k in ks) + (("inception_small", "mixed4a", 4, 256, "invert"),),
        worker_timeout=1800.0)


def smoke_sizes() -> Sizes:
    return Sizes(
        rounds=1, fv_rounds=1, fv_seconds=0.0, fv_min_steps=2, fv_max_steps=2,
        fv_rows=(("pixel", "none", 1), ("pixel", "lucid", 2), ("fourier", "none", 1)),
        jac_configs=(("inception_small", "mixed3a", 1, (4,), 2, 4, ()),
                     ("inceptionv1_224", "mixed4c", 1, (4,), 2, 2, (4,))),
        cold_configs=(("inception_small", "mixed3a", 1, 4, "invert"),),
        iv1_divisor=16, iv1_size=64,
        inv_base=(32, 1, 4), inv_sizes=(32, 40), inv_batches=(1,), inv_ks=(4,),
        inv_large=("inceptionv1_224", "mixed4c", 1, 4), worker_timeout=300.0,
    )


# -- small helpers -----------------------------------------------------------------------------


def median(values):
    import numpy as np

    values = [v for v in values if v is not None and v == v]
    return float(np.median(values)) if values else float("nan")


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def log(*args):
    print(*args, flush=True, file=sys.stderr)


def rss_mb() -> float:
    from bench_jacobian_cold import status  # VmRSS / VmHWM of /proc/self/status, MB

    return status("VmRSS")


def peak_mb() -> float:
    from bench_jacobian_cold import status

    return status("VmHWM")


def reset_peak() -> None:
    from bench_jacobian_cold import reset_peak as reset

    reset()


def configure_threads(threads: int, blas_threads: int) -> dict:
    """Pin TensorFlow's pools (intra-op ``threads``, inter-op 1) and the BLAS pool
    (``blas_threads``); returns what is in effect. In a process where TensorFlow already ran
    (the smoke test inside pytest) the pools stay as they are, and the record says so."""
    import tensorflow as tf

    note = ""
    try:
        from lucid_ifv import threads as lt

        lt.configure_threads(threads)
    except ImportError:  # an older lucid_ifv without the threads module
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as err:
            note = f"TensorFlow pools left as they were ({err})"
    except ValueError as err:
        note = f"TensorFlow pools left as they were ({err})"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(blas_threads)
    except ImportError:
        note += " threadpoolctl missing: BLAS threads from the environment only"
    settings = thread_record()
    settings["note"] = note.strip()
    return settings


def thread_record() -> dict:
    import tensorflow as tf

    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        pass
    return {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "blas": blas, "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ}}


def machine_record() -> dict:
    import numpy as np
    import scipy
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    fields = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" in fields:
        flags = set(fields.get("flags", "").split())
        simd = [f for f in ("avx2", "fma", "avx512f") if f in flags]
        cpu = (f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}, "
               f"{'/'.join(simd) or 'no AVX2'}, {fields.get('cache size', '?')} cache)")
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "numpy": np.__version__,
                "scipy": scipy.__version__}
    for name in ("keras", "xplique", "tf_keras_vis"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name] = None
    build = {}
    try:
        info = tf.sysconfig.get_build_info()
        build = {k: info[k] for k in ("is_cuda_build",) if k in info}
    except Exception:  # noqa: BLE001 (build info differs between TF builds)
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "affinity": affinity, "platform": platform.platform(),
            "versions": versions, "tf_build": build, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}


def peers_available() -> dict:
    """``{"xplique": bool, "tf_keras_vis": bool}`` (importable in this environment)."""
    found = {}
    for name, module in (("xplique", "xplique.features_visualizations"),
                         ("tf_keras_vis", "tf_keras_vis.activation_maximization")):
        try:
            __import__(module)
            found[name] = True
        except Exception as err:  # noqa: BLE001 (a broken install is reported, not fatal)
            found[name] = False
            if importlib.util.find_spec(name.split(".")[0]) is not None:
                log(f"# {name} is installed but does not import: {err!r}")
    return found


# -- models ------------------------------------------------------------------------------------
_MODELS: dict = {}


def fake_inception_module():
    """tests/fake_inception.py, imported by path (the tests folder is not a package)."""
    name = "fake_inception"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "fake_inception.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def get_model(name: str, sizes: Sizes):
    """A `lucid_ifv.model.Model` by name: a shipped model, or ``inceptionv1_224`` (the
    InceptionV1-shaped graph of tests/fake_inception.py with random weights at
    ``sizes.iv1_size`` px and channels divided by ``sizes.iv1_divisor``)."""
    key = (name, sizes.iv1_divisor, sizes.iv1_size) if name == "inceptionv1_224" else name
    if key in _MODELS:
        return _MODELS[key]
    if name == "inceptionv1_224":
        from modelzoo.graph import GraphModel
        from modelzoo.lucid_format import Metadata

        fi = fake_inception_module()
        depths = fi.depths(sizes.iv1_divisor)
        meta = Metadata.from_dict({
            "name": f"InceptionV1-shaped ({sizes.iv1_size} px, random weights)", "input_name": "input",
            "image_shape": [sizes.iv1_size, sizes.iv1_size, 3], "image_value_range": list(fi.VALUE_RANGE),
            "layers": [{"name": n, "depth": d, "tags": ["conv"]} for n, d in depths.items()
                       if n.startswith(("conv", "mixed"))],
        })
        model = GraphModel(fi.build_graph_def(divisor=sizes.iv1_divisor, size=sizes.iv1_size), meta)
    else:
        from modelzoo.shipped import load_shipped

        model = load_shipped(name)
    _MODELS[key] = model
    return model


# ============================================================================================
# 1. Feature visualization steps/s
# ============================================================================================


class Contender:
    """One way of running FV steps: `prepare()` builds and compiles it, `rate(steps)` times
    ``steps`` warm steps and returns steps/s."""

    name = ""
    available = True

    def prepare(self):
        pass

    def rate(self, steps: int) -> float:
        raise NotImplementedError

    def close(self):
        pass


def _channels(batch: int, depth: int) -> list:
    return [(3 * i) % depth for i in range(batch)]


def _fv_spec(model, param_kind: str, batch: int, seed: int = 0):
    from lucid_ifv import param as P

    h, w, _ = model.image_shape
    return P.image(w, h=h, batch=batch, fft=param_kind == "fourier", decorrelate=True, seed=seed)


class Ours(Contender):
    """`render_vis`'s compiled Adam step (`VisSetup.step`), the objective read every
    `render.READ_EVERY` steps as `render_vis` does (a host sync and a NaN check)."""

    name = "ours"

    def __init__(self, model, layer, channels, param_kind, transforms):
        self.args = (model, layer, channels, param_kind, transforms)

    def prepare(self):
        import tensorflow as tf

        from lucid_ifv import objectives as O
        from lucid_ifv.render import VisSetup

        model, layer, channels, param_kind, transforms = self.args
        if len(channels) == 1:
            objective = O.channel(layer, channels[0])
        else:  # Lucid's idiom: one objective per batch element
            objective = O.Objective.sum(O.channel(layer, c, batch=i) for i, c in enumerate(channels))
        self.vis = VisSetup(model, objective, _fv_spec(model, param_kind, len(channels)),
                            optimizer=tf.keras.optimizers.Adam(0.05, epsilon=1e-8),
                            transforms=None if transforms == "lucid" else [], seed=0, relu_gradient_override=False)
        for _ in range(2):
            float(self.vis.step())

    def rate(self, steps):
        from lucid_ifv.render import READ_EVERY

        t0 = time.perf_counter()
        for i in range(1, steps + 1):
            value = self.vis.step()
            if i % READ_EVERY == 0 or i == steps:
                float(value)
        return steps / (time.perf_counter() - t0)


class Floor(Contender):
    """The bare compiled step: a hand-written `tf.function` doing the same parametrization
    (decorrelated colour + sigmoid, with or without Lucid's Fourier map), the same transforms
    (the same `lucid_ifv.transform` functions), the Keras sub-model forward, the channel
    objective as one masked mean, the backward pass and the Adam update, nothing else."""

    name = "floor"

    def __init__(self, model, layer, channels, param_kind, transforms):
        self.args = (model, layer, channels, param_kind, transforms)

    def prepare(self):
        import numpy as np
        import tensorflow as tf

        from lucid_ifv import transform as T
        from lucid_ifv.param.color import COLOR_CORRELATION_NORMALIZED
        from lucid_ifv.param.spatial import fft_scale

        model, layer, channels, param_kind, transforms = self.args
        batch = len(channels)
        h, w, c = model.image_shape
        keras_model = model.keras_model
        sub = tf.keras.Model(keras_model.inputs, keras_model.get_layer(layer).output)
        lo, hi = model.image_value_range
        rng = np.random.default_rng(0)
        if param_kind == "fourier":
            scale = tf.constant(fft_scale(h, w))
            var = tf.Variable(rng.normal(0, 0.01, (batch, 2, c) + tuple(scale.shape)).astype(np.float32))

            def raw(z):
                spectrum = tf.complex(z[:, 0] * scale, z[:, 1] * scale)
                return tf.transpose(tf.signal.irfft2d(spectrum), (0, 2, 3, 1))[:, :h, :w, :] / 4.0
        else:
            var = tf.Variable(rng.normal(0, 0.01, (batch, h, w, c)).astype(np.float32))
            raw = tf.identity
        colour = tf.constant(COLOR_CORRELATION_NORMALIZED.T)
        mask = tf.constant(np.eye(int(sub.output.shape[-1]), dtype=np.float32)[channels])  # [B, depth]
        transform = None
        if transforms == "lucid":
            composed = T.compose(list(T.standard_transforms) + [T.resize_to(h, w)])
            generator = tf.random.Generator.from_seed(0)
            transform = lambda x: composed(x, generator)  # noqa: E731
        opt = tf.keras.optimizers.Adam(0.05, epsilon=1e-8)
        opt.build([var])

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                t = raw(var)
                x = tf.nn.sigmoid(tf.reshape(tf.reshape(t, [-1, 3]) @ colour, tf.shape(t)))
                if transform is not None:
                    x = transform(x)
                acts = sub(lo + x * (hi - lo), training=False)
                value = tf.reduce_sum(tf.reduce_mean(acts, axis=[1, 2]) * mask)
                loss = -value
            grads = tape.gradient(loss, [var])
            opt.apply_gradients(zip(grads, [var]))
            return value

        self.step = step
        for _ in range(2):
            step().numpy()

    def rate(self, steps):
        t0 = time.perf_counter()
        for _ in range(steps):
            value = self.step()
        value.numpy()
        return steps / (time.perf_counter() - t0)


class XpliqueOptimize(Contender):
    """`xplique.features_visualizations.optimize` (the public function, one call per timed
    run). Its step is a fresh `tf.function` per call (traced at its first step); the rate is
    taken between the timestamps of its warm steps, recorded by wrapping the module's
    ``_get_optimisation_step`` (which `optimize` looks up at call time): each interval holds
    one compiled step and the eager ``optimizer.apply_gradients`` of the previous one."""

    name = "xplique"
    SKIP = 2  # steps left out of the rate: the first traces the step

    def __init__(self, model, layer, channels, param_kind, transforms):
        self.args = (model, layer, channels, param_kind, transforms)

    def prepare(self):
        import tensorflow as tf
        from xplique.features_visualizations import Objective

        model, layer, channels, param_kind, transforms = self.args
        self.objective = Objective.channel(model.keras_model, layer, list(channels))
        if transforms == "lucid":  # the very transforms ours and the floor use (Xplique resizes after them)
            from lucid_ifv import transform as T

            composed = T.compose(list(T.standard_transforms))
            generator = tf.random.Generator.from_seed(0)
            self.transformations = lambda x: composed(x, generator)  # noqa: E731
        elif transforms == "xplique":
            self.transformations = "standard"  # Xplique's own (pad, 7 jitters, scale, blur, flip)
        else:
            self.transformations = None
        self.kwargs = dict(use_fft=param_kind == "fourier", fft_decay=1.0, std=0.01, regularizers=None,
                           image_normalizer="sigmoid", values_range=tuple(model.image_value_range),
                           warmup_steps=False, custom_shape=None, save_every=None)
        self.rate(self.SKIP + 2)

    def rate(self, steps):
        import tensorflow as tf
        from xplique.features_visualizations import optim

        stamps = []
        original = optim._get_optimisation_step

        def timed_factory(*args, **kwargs):
            step = original(*args, **kwargs)

            def timed(model, inputs):
                grads = step(model, inputs)
                stamps.append(time.perf_counter())
                return grads

            return timed

        optim._get_optimisation_step = timed_factory
        try:
            optim.optimize(self.objective, optimizer=tf.keras.optimizers.Adam(0.05, epsilon=1e-8),
                           nb_steps=steps + self.SKIP, transformations=self.transformations, **self.kwargs)
        finally:
            optim._get_optimisation_step = original
        warm = stamps[self.SKIP - 1:]
        return (len(warm) - 1) / (warm[-1] - warm[0])


class TfKerasVis(Contender):
    """`tf_keras_vis.activation_maximization.ActivationMaximization` (one call per timed run),
    rate between the timestamps its per-step callback records (after each step's update and
    clipping). Eager: no compiled step. It optimizes the model input itself (no
    parametrization: no sigmoid, no colour decorrelation, no Fourier)."""

    name = "tf-keras-vis"
    SKIP = 1

    def __init__(self, model, layer, channels, param_kind, transforms):
        self.args = (model, layer, channels, param_kind, transforms)
        self.available = param_kind == "pixel"

    def prepare(self):
        import numpy as np
        import tensorflow as tf
        from tf_keras_vis.activation_maximization import ActivationMaximization
        from tf_keras_vis.activation_maximization.callbacks import Callback
        from tf_keras_vis.activation_maximization.input_modifiers import Jitter, Rotate2D

        model, layer, channels, _, transforms = self.args
        keras_model = model.keras_model
        sub = tf.keras.Model(keras_model.inputs, keras_model.get_layer(layer).output)
        mask = tf.constant(np.eye(int(sub.output.shape[-1]), dtype=np.float32)[channels])
        self.score = lambda out: tf.reduce_sum(tf.reduce_mean(out, axis=[1, 2]) * mask, axis=-1)  # noqa: E731
        self.am = ActivationMaximization(sub, clone=False)
        lo, hi = model.image_value_range
        self.range = (float(lo), float(hi))
        shape = (len(channels),) + tuple(model.image_shape)
        self.seed = np.random.default_rng(0).uniform(lo, hi, shape).astype(np.float32)
        # with transforms: its own default input modifiers (applied to the values outside the tape)
        self.modifiers = [Jitter(jitter=4), Rotate2D(degree=1)] if transforms != "none" else []
        stamps = self.stamps = []

        class Stamp(Callback):
            def __call__(self, *args, **kwargs):
                stamps.append(time.perf_counter())

        self.callback = Stamp()
        self.rate(self.SKIP + 2)

    def rate(self, steps):
        import tensorflow as tf

        self.stamps.clear()
        self.am(self.score, seed_input=self.seed, input_range=self.range, input_modifiers=self.modifiers,
                regularizers=[], steps=steps + self.SKIP, optimizer=tf.keras.optimizers.Adam(0.05, epsilon=1e-8),
                callbacks=[self.callback])
        warm = self.stamps[self.SKIP - 1:]
        return (len(warm) - 1) / (warm[-1] - warm[0])


FV_ROWS = [(p, t) for p in ("pixel", "fourier") for t in ("none", "lucid")]


def bench_fv(sizes: Sizes, peers: dict) -> dict:
    import gc

    model = get_model(sizes.fv_model, sizes)
    depth = model.layer(sizes.fv_layer).depth
    rows = []
    plan = sizes.fv_rows or [(p, t, b) for b in sizes.fv_batches for p, t in FV_ROWS]
    for param_kind, transforms, batch in plan:
        if True:
            channels = _channels(batch, depth)
            args = (model, sizes.fv_layer, channels, param_kind, transforms)
            contenders = [Ours(*args), Floor(*args)]
            if peers.get("xplique"):
                contenders.append(XpliqueOptimize(*args))
                if transforms == "lucid":
                    own = XpliqueOptimize(model, sizes.fv_layer, channels, param_kind, "xplique")
                    own.name = "xplique (own transforms)"
                    contenders.append(own)
            if peers.get("tf_keras_vis"):
                contenders.append(TfKerasVis(*args))
            contenders = [c for c in contenders if c.available]
            label = f"{param_kind}, {'Lucid transforms' if transforms == 'lucid' else 'no transforms'}, batch {batch}"
            log(f"# FV {label}: " + ", ".join(c.name for c in contenders))
            compile_s, steps = {}, {}
            for c in contenders:
                t0 = time.perf_counter()
                c.prepare()
                compile_s[c.name] = time.perf_counter() - t0
                # steps per timed run: about sizes.fv_seconds of work
                r = c.rate(sizes.fv_min_steps)
                steps[c.name] = int(min(sizes.fv_max_steps, max(sizes.fv_min_steps, r * sizes.fv_seconds)))
            rates = {c.name: [] for c in contenders}
            loads = []
            for rnd in range(sizes.fv_rounds):
                order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
                for c in order:
                    rates[c.name].append(c.rate(steps[c.name]))
                loads.append(loadavg())
            for c in contenders:
                c.close()
            row = {"param": param_kind, "transforms": transforms, "batch": batch, "label": label,
                   "rates": {k: median(v) for k, v in rates.items()}, "rates_all": rates, "steps": steps,
                   "setup_s": compile_s, "load": loads, "ratios": {}}
            ours = rates["ours"]
            for name, values in rates.items():
                if name != "ours":
                    row["ratios"][name] = median([a / b for a, b in zip(ours, values)])
            rows.append(row)
            log("   " + ", ".join(f"{k} {v:.1f}/s" for k, v in row["rates"].items()) + " | "
                + ", ".join(f"ours/{k} {v:.2f}" for k, v in row["ratios"].items()))
            del contenders
            gc.collect()
    return {"model": sizes.fv_model, "layer": sizes.fv_layer, "image_shape": list(model.image_shape),
            "depth": depth, "rows": rows}


# ============================================================================================
# 2. Jacobian: ours, the per-feature loop, the limit
# ============================================================================================


def _unflatten_any(z, param):
    """``[N, D]`` -> parameter tensors of batch N shaped like ``param.variables`` (any N)."""
    import numpy as np
    import tensorflow as tf

    shapes = [tuple(v.shape[1:]) for v in param.variables]
    parts = tf.split(z, [int(np.prod(s)) for s in shapes], axis=1)
    return [tf.reshape(p, (-1,) + s) for p, s in zip(parts, shapes)]


class JacobianCase:
    """One (model, layer, batch): the realization, ours, the loop and the limit's parts."""

    def __init__(self, model, layer, batch, seed=0):
        import numpy as np
        import tensorflow as tf

        from lucid_ifv import objectives as O
        from lucid_ifv import param as P
        from lucid_ifv.ifv import jacobian as J

        self.model, self.layer, self.batch = model, layer, batch
        self.param = P.image_for_model(model, batch=batch, seed=seed)
        self.params = self.param.numpy_params()
        self.z = tf.constant(J._flatten(self.params, batch))
        self.dim = int(self.z.shape[1])
        self.depth = model.layer(layer).depth
        param = self.param

        def response(z):
            return O.feature_response(model(param.forward(_unflatten_any(z, param)), [layer])[layer])

        self.forward = tf.function(response, autograph=False)

        @tf.function(autograph=False)
        def row(z, i):
            with tf.GradientTape() as tape:
                tape.watch(z)
                value = tf.reduce_sum(response(z)[:, i])
            return tape.gradient(value, z)

        @tf.function(autograph=False)
        def forward_backward(z, rows):
            with tf.GradientTape() as tape:
                tape.watch(z)
                f = response(z)
                value = tf.reduce_sum(f * tf.one_hot(rows, tf.shape(f)[-1], dtype=f.dtype))
            return tape.gradient(value, z)

        self.row, self.forward_backward = row, forward_backward
        self.np = np

    def ours(self, k):
        from lucid_ifv import ifv

        return ifv.feature_jacobian(self.model, self.layer, self.params, self.param, features=self.np.arange(k))

    def loop(self, rows):
        """One compiled gradient per feature (forward + one backward each), rows ``[B, n, D]``."""
        import tensorflow as tf

        out = [self.row(self.z, tf.constant(int(i))).numpy() for i in rows]
        return self.np.stack(out, axis=1)

    def limit_parts(self, tile, reps=2):
        """``(forward at batch B, per-row backward batched, per-row backward single)`` seconds:
        the backward pass's cost per row measured on ``tile`` copies of the batch in one
        batched pass (forward + backward at batch ``B * tile`` minus its forward), each copy
        with the one-hot cotangent of another feature; and on the batch itself (one copy).
        Each timing is the best of ``reps`` runs."""
        import tensorflow as tf

        zt = tf.tile(self.z, [tile, 1])
        rows = tf.constant([i % self.depth for i in range(tile) for _ in range(self.batch)], tf.int32)
        one = tf.zeros([self.batch], tf.int32)

        def best(fn, *args):  # the best of `reps` runs: noise on a shared machine only adds
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn(*args).numpy()
                times.append(time.perf_counter() - t0)
            return min(times)

        fwd, fb = best(self.forward, self.z), best(self.forward_backward, self.z, one)
        fwd_c, fb_c = best(self.forward, zt), best(self.forward_backward, zt, rows)
        return fwd, max(fb_c - fwd_c, 0.0) / tile, max(fb - fwd, 0.0)


def _traces():
    """Compiled Jacobian traces so far (`jacobian.cache_info`), or None without that API."""
    try:
        from lucid_ifv.ifv import jacobian as J

        return J.cache_info()["traces"]
    except (ImportError, AttributeError, KeyError):
        return None


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


@contextlib.contextmanager
def vectorized_blocks():
    """Within the block, `feature_jacobian` always runs its vectorized (pfor) blocks, what a
    structure's calls after its first run (`jacobian.block_kind`): the warm sections time
    those; the cold section times the first call as users get it."""
    before = os.environ.get("LUCID_IFV_JACOBIAN")
    os.environ["LUCID_IFV_JACOBIAN"] = "pfor"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LUCID_IFV_JACOBIAN")
        else:
            os.environ["LUCID_IFV_JACOBIAN"] = before


def bench_jacobian(sizes: Sizes, keep_large=None) -> dict:
    """Warm times side by side. ``keep_large``: (name, layer, batch, k) whose last ours
    result is kept (f, J) for the inversion section's large-k stage shares."""
    import gc

    import numpy as np

    from lucid_ifv.ifv import jacobian as J

    out, kept = [], None
    for name, layer, batch, ks, tile, loop_rows, once in sizes.jac_configs:
        model = get_model(name, sizes)
        case = JacobianCase(model, layer, batch)
        ks = [k for k in ks if k <= case.depth]
        log(f"# Jacobian {name} {layer} (depth {case.depth}), batch {batch}, D = {case.dim}, k = {ks}")
        # compile everything first (cold times in this warm process are reported separately)
        first = {}
        for k in ks:
            if k not in once:
                first[k], _ = _timed(lambda: case.ours(k))
            elif hasattr(J, "default_chunk"):  # compile its block size on one block only (same trace)
                chunk = J.default_chunk(k, batch, case.dim, J.activation_elements(model, layer, case.param))
                case.ours(min(chunk, k))
        case.loop([0])
        case.limit_parts(tile)
        n_loop = {k: min(k, loop_rows) for k in ks}
        times = {k: {"ours": [], "loop": [], "limit": []} for k in ks}
        check = {}
        loads, limit_rows = [], []
        for rnd in range(sizes.rounds):
            t_fwd, t_batched, t_single = case.limit_parts(tile)
            t_row = min(t_batched, t_single)
            limit_rows.append((t_batched, t_single, t_fwd))
            per_row_loop = {}
            for k in (ks if rnd % 2 == 0 else ks[::-1]):
                if k in once and rnd > 0:
                    continue
                traces = _traces()
                t_ours, (f, jac) = _timed(lambda: case.ours(k))
                times[k]["ours"].append(t_ours)
                if traces is not None and _traces() != traces:
                    times[k]["traced_in_timed_run"] = True
                n = n_loop[k]
                if n not in per_row_loop:
                    t_loop, rows = _timed(lambda: case.loop(range(n)))
                    per_row_loop[n] = t_loop / n
                    if n not in check:
                        check[n] = rows
                times[k]["loop"].append(per_row_loop[n] * k)
                times[k]["limit"].append(t_fwd + k * t_row)
                rows = check[n]
                scale = float(np.abs(rows).max()) or 1.0
                times[k].setdefault("max_rel_diff", float(np.abs(jac[:, :n] - rows).max()) / scale)
                if keep_large is not None and (name, layer, batch, k) == tuple(keep_large):
                    kept = (f, jac, t_ours, case)
                del jac
            loads.append(loadavg())
        rows_out = []
        for k in ks:
            t = times[k]
            chunk = J.default_chunk(k, batch, case.dim, J.activation_elements(model, layer, case.param)) \
                if hasattr(J, "default_chunk") else None
            rows_out.append({
                "k": k, "ours": median(t["ours"]), "loop": median(t["loop"]), "limit": median(t["limit"]),
                "ours_over_limit": median([a / b for a, b in zip(t["ours"], t["limit"])]),
                "loop_over_ours": median([b / a for a, b in zip(t["ours"], t["loop"])]),
                "rounds": len(t["ours"]), "loop_rows_timed": n_loop[k], "chunk": chunk,
                "first_call_in_warm_process": first.get(k), "max_rel_diff": t.get("max_rel_diff"),
                "traced_in_timed_run": t.get("traced_in_timed_run", False),
            })
            log(f"   k={k}: ours {rows_out[-1]['ours']:.2f}s, loop {rows_out[-1]['loop']:.2f}s, "
                f"limit {rows_out[-1]['limit']:.2f}s, ours/limit {rows_out[-1]['ours_over_limit']:.2f}")
        out.append({"model": name, "layer": layer, "batch": batch, "depth": case.depth, "dim": case.dim,
                    "tile": tile, "limit_row_batched": median([a for a, _, _ in limit_rows]),
                    "limit_row_single": median([b for _, b, _ in limit_rows]),
                    "forward": median([c for _, _, c in limit_rows]), "image_shape": list(model.image_shape),
                    "rows": rows_out, "load": loads})
        gc.collect()
    return {"configs": out, "kept": kept}


# -- the cold start and peak memory, one fresh process per configuration -----------------------


def worker(spec: dict) -> dict:
    """Run in a fresh process: load the model, run one forward pass (the model is ready),
    then time the first answer (``kind="jacobian"``: `feature_jacobian`; ``"invert"``:
    `ifv.invert` of fresh images with a ``params_L2`` prior) and its peak memory, then a
    second call (it compiles the vectorized blocks, `jacobian.block_kind`) and a third, warm."""
    import numpy as np

    settings = configure_threads(spec["threads"], spec["blas_threads"])
    sizes = Sizes(iv1_divisor=spec["iv1_divisor"], iv1_size=spec["iv1_size"])
    t0 = time.perf_counter()
    model = get_model(spec["model"], sizes)
    load_s = time.perf_counter() - t0
    from lucid_ifv import ifv
    from lucid_ifv import objectives as O
    from lucid_ifv import param as P

    layer, batch, k = spec["layer"], spec["batch"], spec["k"]
    features = np.arange(k)
    par = P.image_for_model(model, batch=batch, seed=0)
    images = par().numpy()
    model(images, [layer])[layer].numpy()  # the model is ready: TF's first-run costs are paid
    params = par.numpy_params()
    fresh = P.image_for_model(model, batch=batch, seed=1)().numpy()

    def call(imgs=None):
        if spec["kind"] == "invert":
            return ifv.invert(model, layer, imgs if imgs is not None else images, features=features,
                              prior=O.params_L2())
        return ifv.feature_jacobian(model, layer, params, par, features=features)

    rss0, hwm_before = rss_mb(), peak_mb()  # hwm_before: the process's peak so far (model loading)
    reset_peak()
    cpu0, t0 = time.process_time(), time.perf_counter()
    call()
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = peak_mb() - rss0
    t0 = time.perf_counter()
    call(fresh)  # fresh images (invert) / same params (jacobian): the structure's second call
    second = time.perf_counter() - t0
    t0 = time.perf_counter()
    call()
    warm = time.perf_counter() - t0
    traces = _traces()
    return {**spec, "load_s": load_s, "cold": cold, "cold_cpu": cold_cpu, "second": second, "warm": warm,
            "peak_mb": peak,
            "rss_before_mb": rss0, "process_peak_mb": max(hwm_before, peak_mb()),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "traces": traces, "loadavg": loadavg(), "threads": settings}


def run_workers(sizes: Sizes, args) -> list:
    results = []
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name, layer, batch, k, kind in sizes.cold_configs:
        spec = {"model": name, "layer": layer, "batch": batch, "k": k, "kind": kind, "threads": args.threads,
                "blas_threads": args.blas_threads, "iv1_divisor": sizes.iv1_divisor, "iv1_size": sizes.iv1_size}
        log(f"# cold start / peak memory: {kind} {name} {layer} batch {batch} k {k} (fresh process)")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                  capture_output=True, text=True, timeout=sizes.worker_timeout, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                raise RuntimeError(f"worker exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
            result = json.loads(lines[-1][len("RESULT "):])
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            result = {**spec, "error": str(err)[-500:]}
            log(f"   failed: {result['error']}")
        result["process_s"] = time.perf_counter() - t0
        if "cold" in result:
            log(f"   cold {result['cold']:.2f}s (CPU {result['cold_cpu']:.1f}s), warm {result['warm']:.2f}s, "
                f"peak +{result['peak_mb']:.0f} MB")
        results.append(result)
    return results


# ============================================================================================
# 3. Inversion end to end
# ============================================================================================


def staged_inversion(model, layer, params, par, features, prior, jac_result=None) -> dict:
    """The stages of `ifv.invert` (as it runs them), each timed, then Algorithm 1 on the
    same Jacobians (spectra of ``J J^T`` and the trivial-space estimate)."""
    from lucid_ifv import critical_space as C
    from lucid_ifv import ifv

    times = {}
    t0 = time.perf_counter()
    par2, params2 = ifv.resolve_realization(model, list(params), par, "params")
    times["inputs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grads = ifv.prior_gradients(model, prior, params2, par2)
    times["prior gradients"] = time.perf_counter() - t0
    if jac_result is None:
        t0 = time.perf_counter()
        f, jac = ifv.feature_jacobian(model, layer, params2, par2, features=features)
        times["Jacobian"] = time.perf_counter() - t0
    else:
        f, jac, times["Jacobian"] = jac_result
    t0 = time.perf_counter()
    stats = ifv.gram_statistics(jac, grads)
    times["Gram"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = ifv.solve_gram(f, stats)
    times["solve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    spectra = ifv.jacobian_spectra(f, stats)
    C.estimate_trivial_space(spectra, 1e-3)
    times["Algorithm 1"] = time.perf_counter() - t0
    assert result.target.shape == f.shape
    return times


def fit_slope(xs, ys) -> float:
    import numpy as np

    xs, ys = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 2 else float("nan")


def bench_inversion(sizes: Sizes, kept=None) -> dict:
    import numpy as np

    from lucid_ifv import ifv
    from lucid_ifv import objectives as O
    from lucid_ifv import param as P

    model = get_model(sizes.inv_model, sizes)
    layer = sizes.inv_layer
    depth = model.layer(layer).depth
    size0, batch0, k0 = sizes.inv_base
    configs = sorted({(s, batch0, k0) for s in sizes.inv_sizes} | {(size0, b, k0) for b in sizes.inv_batches}
                     | {(size0, batch0, k) for k in sizes.inv_ks if k <= depth})
    prior = O.params_L2()

    def realization(size, batch, seed):
        par = P.image(size, batch=batch, seed=seed)  # Fourier + decorrelated colour, as image_for_model
        return par, par.numpy_params()

    log(f"# inversion {sizes.inv_model} {layer}: {len(configs)} configurations (size, batch, k)")
    cold = {}
    for cfg in configs:  # first call of each configuration: compiles its Jacobian
        size, batch, k = cfg
        par, params = realization(size, batch, 0)
        cold[cfg], _ = _timed(lambda: ifv.invert(model, layer, params, par, features=np.arange(k), prior=prior))
    traces_before = _traces()
    times = {cfg: [] for cfg in configs}
    loads = []
    for rnd in range(sizes.rounds):
        order = configs if rnd % 2 == 0 else configs[::-1]
        for cfg in order:
            size, batch, k = cfg
            par, params = realization(size, batch, 100 + rnd)  # fresh arrays and parametrization every call
            t, _ = _timed(lambda: ifv.invert(model, layer, params, par, features=np.arange(k), prior=prior))
            times[cfg].append(t)
        loads.append(loadavg())
    traces_after = _traces()
    stages = {}
    for cfg in configs:
        size, batch, k = cfg
        par, params = realization(size, batch, 7)
        stages[cfg] = staged_inversion(model, layer, params, par, np.arange(k), prior)
    rows = [{"size": c[0], "batch": c[1], "k": c[2], "seconds": median(times[c]), "per_sample": median(times[c]) / c[1],
             "first_call": cold[c], "stages": stages[c]} for c in configs]

    def sweep(index, values):
        pts = [r for r in rows if all(r[n] == v for n, v in zip(("size", "batch", "k"), sizes.inv_base) if n != index)
               and r[index] in values]
        pts.sort(key=lambda r: r[index])
        return {"points": [(r[index], r["seconds"]) for r in pts],
                "slope": fit_slope([r[index] for r in pts], [r["seconds"] for r in pts])}

    large = None
    if kept is not None:
        f, jac, t_jac, case = kept
        st = staged_inversion(case.model, case.layer, case.params, case.param, np.arange(jac.shape[1]), prior,
                              jac_result=(f, jac, t_jac))
        large = {"model": sizes.inv_large[0], "layer": case.layer, "batch": case.batch, "k": int(jac.shape[1]),
                 "dim": case.dim, "stages": st}
        log("   large k stages: " + ", ".join(f"{k} {v:.3g}s" for k, v in st.items()))
    return {"model": sizes.inv_model, "layer": layer, "depth": depth, "base": list(sizes.inv_base), "rows": rows,
            "sweeps": {"size": sweep("size", sizes.inv_sizes), "batch": sweep("batch", sizes.inv_batches),
                       "k": sweep("k", sizes.inv_ks)},
            "retraces_during_rounds": None if traces_before is None else traces_after - traces_before,
            "large": large, "load": loads}


# ============================================================================================
# report
# ============================================================================================


def make_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker below)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, key in zip(axes, ("fv", "jac", "inv")):
        if not results.get(key):
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"section {key} not run", ha="center", va="center")
    ax = axes[0]
    fv = results.get("fv")
    if fv:
        labels = []
        names = []
        for row in fv["rows"]:
            labels.append(f"{row['param'][:3]}{'+T' if row['transforms'] == 'lucid' else ''} b{row['batch']}")
            for name in row["ratios"]:
                if name not in names:
                    names.append(name)
        width = 0.8 / max(len(names), 1)
        for j, name in enumerate(names):
            values = [row["ratios"].get(name, float("nan")) for row in fv["rows"]]
            ax.bar([i + j * width for i in range(len(labels))], values, width, label=f"ours / {name}")
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.9, color="grey", ls=":", lw=0.8, label="0.9 (floor target)")
        ax.axhline(1.5, color="grey", ls="--", lw=0.8, label="1.5 (Xplique target)")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("steps/s ratio (> 1: ours faster)")
        ax.set_title(f"FV steps/s, {fv['model']} {fv['layer']}")
        ax.legend(fontsize=7)
    ax = axes[1]
    jac = results.get("jac")
    if jac:
        styles = {"ours": "-o", "loop": "--s", "limit": ":^"}
        for j, cfg in enumerate(jac["configs"]):
            colour = f"C{j}"
            for what, style in styles.items():
                ax.loglog([r["k"] for r in cfg["rows"]], [r[what] for r in cfg["rows"]], style, color=colour,
                          label=f"{cfg['model']} {what}", ms=4)
        ks = sorted({r["k"] for cfg in jac["configs"] for r in cfg["rows"]})
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (features)")
        ax.set_ylabel("warm seconds")
        ax.set_title("Jacobian: ours vs per-feature loop vs limit")
        ax.legend(fontsize=7)
    ax = axes[2]
    inv = results.get("inv")
    if inv:
        for name, sweep in inv["sweeps"].items():
            pts = sweep["points"]
            if pts:
                ax.loglog([p[0] / pts[0][0] for p in pts], [p[1] for p in pts], "-o", ms=4,
                          label=f"{name} (slope {sweep['slope']:.2f})")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
        ax.set_xlabel("factor over the base (size / batch / k)")
        ax.set_ylabel("ifv.invert seconds")
        ax.set_title(f"inversion, {inv['model']} {inv['layer']}, base {tuple(inv['base'])}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def traced(row) -> str:
    return " (traced in the timed run)" if row.get("traced_in_timed_run") else ""


def status_word(ok) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def targets(results: dict) -> list:
    """``[(target, measured, met)]`` from the numbers (issue 11's targets)."""
    out = []
    fv = results.get("fv")
    if fv:
        fourier = [r for r in fv["rows"] if r["param"] == "fourier" and r["transforms"] == "none"]
        vals = [r["ratios"].get("floor") for r in fourier]
        out.append(("FV: >= 0.9 of the floor, Fourier + decorrelation (no transforms; every batch)",
                    ", ".join(f"batch {r['batch']}: {fmt(v, 3)}" for r, v in zip(fourier, vals)),
                    all(v >= 0.9 for v in vals) if vals else None))
        tf_rows = [r for r in fv["rows"] if r["param"] == "fourier" and r["transforms"] == "lucid"]
        if tf_rows:
            out.append(("(same, with Lucid's transforms; the issue measured 0.78)",
                        ", ".join(f"batch {r['batch']}: {fmt(r['ratios'].get('floor'), 3)}" for r in tf_rows), None))
        xs = [(r, r["ratios"]["xplique"]) for r in fv["rows"] if "xplique" in r["ratios"]]
        out.append(("FV: >= 1.5x Xplique on every row (same transforms)",
                    "min " + fmt(min(v for _, v in xs), 3) + " (" + ", ".join(
                        f"{r['param'][:3]}{'+T' if r['transforms'] == 'lucid' else ''} b{r['batch']} {v:.2f}"
                        for r, v in xs) + ")" if xs else "Xplique not installed",
                    all(v >= 1.5 for _, v in xs) if xs else None))
    jac = results.get("jac")
    if jac:
        for cfg in jac["configs"]:
            vals = [(r["k"], r["ours_over_limit"]) for r in cfg["rows"]]
            out.append((f"Jacobian warm <= 1.3x the limit ({cfg['model']} {cfg['layer']}, batch {cfg['batch']})",
                        ", ".join(f"k={k}: {v:.3f}x" for k, v in vals), all(v <= 1.3 for _, v in vals)))
    for w in results.get("cold", []):
        if "cold" in w and w["k"] >= 256 and w["model"] == "inception_small":
            out.append((f"cold first answer < 5 s at k = {w['k']} ({w['kind']}, {w['model']} {w['layer']}, "
                        f"batch {w['batch']}, fresh process, model loaded)",
                        f"{w['cold']:.2f} s wall ({w['cold_cpu']:.1f} CPU s)", w["cold"] < 5.0))
    inv = results.get("inv")
    if inv and inv.get("large"):
        st = inv["large"]["stages"]
        rest = sum(v for k, v in st.items() if k not in ("Jacobian", "Algorithm 1"))
        share = rest / st["Jacobian"]
        out.append((f"solve + everything but the Jacobian < 10% of the Jacobian at k = {inv['large']['k']} "
                    f"({inv['large']['model']} {inv['large']['layer']}, batch {inv['large']['batch']})",
                    f"{100 * share:.1f} % ({rest:.2f} s vs {st['Jacobian']:.1f} s; Algorithm 1 apart: "
                    f"{st['Algorithm 1']:.2f} s)", share < 0.10))
    total = results.get("make_wall_s") or results.get("wall_s")
    if total:
        out.append(("`make bench` under 15 minutes on 2 cores",
                    f"{total / 60:.1f} min ({'make' if results.get('make_wall_s') else 'script only'})",
                    total < 900))
    return out


STATIC_METHOD = """
## What each contender does per step (read off their sources in the bench environment)

- **ours** (`lucid_ifv.render.VisSetup.step`, what `render_vis` runs): one compiled
  `tf.function` per step: the parametrization (pixel or Lucid's Fourier map: scale, complex
  spectrum, `irfft2d`, crop, `/4`; then the decorrelated colour matrix and a sigmoid), the
  transforms (Lucid's `standard_transforms`: pad 12, jitter 8, random scale, random rotate,
  jitter 4, then a resize back to the model's 32 px), the Keras sub-model to the tapped layer
  (`KerasModel`), the objective through `T`, the backward pass and the Adam update, all in one
  call; every 10th step (`render.READ_EVERY`) one host read of the value and the NaN check,
  as `render_vis` does (the floor reads once per timed run). The
  redirected-ReLU variant (first 16 steps of `render_vis`) is switched off: the peers have none.
- **floor**: a hand-written `tf.function` with the same parametrization written out, the same
  transform functions, the Keras sub-model, the channel objective as one masked mean, the
  backward pass and Adam, nothing else: what any implementation must at least do.
- **Xplique** (`xplique.features_visualizations.optimize`, 2.0.2): a compiled step (fresh
  `tf.function` per `optimize` call) computing the parametrization (Fourier: its own
  `fft_to_rgb` with `fft_decay=1.0` to match Lucid's scale; pixel: the raw buffer), *always*
  its colour recorrelation and sigmoid followed by a per-image min-max normalisation to
  `values_range` (two more reductions), the transforms if any, *always* a
  `tf.image.resize` to the model's input size, the model to the layer, the objective
  (`Objective.channel`: the mean of the masked layer output) and the regularizers (none
  here), returning the gradient; then `optimizer.apply_gradients([(-grads, inputs)])` runs
  **eagerly, outside the compiled step** (a second dispatch and an eager negation per step).
  Xplique cannot switch off the colour decorrelation of RGB images, so the pixel rows use
  decorrelated pixels for every contender. Rows "Lucid transforms" pass our composed
  `standard_transforms` as its `transformations` callable (like for like); the extra
  column "xplique (own transforms)" uses its `"standard"` set (pad, 7 random crops, random
  scale, a 10x10 random Gaussian blur, random flip), a different amount of work.
- **tf-keras-vis** (`ActivationMaximization`, 0.8.7): fully eager, nothing compiled: per
  step its input modifiers change the *values* outside the tape (`Jitter`: `tf.roll`;
  `Rotate2D`: SciPy `ndimage.rotate` on the host), the values are assigned to a variable,
  the model runs under a tape, the score and regularizers (none here), the gradient, the
  optimizer's update, then a clip to `input_range` and the callbacks. It optimizes the model
  input directly: no parametrization (no sigmoid, no colour decorrelation) and **no Fourier
  parametrization**, so it has pixel rows only, and its "transforms" are its own default
  modifiers (`Jitter(4)`, `Rotate2D(1)`; the Lucid transforms change the image size and
  must be differentiable, which its modifiers are not). Its pixel rows are therefore the
  least like-for-like: it does less parametrization work and more host work.

Same everywhere: the model (`photos_cnn`, a shipped Keras CNN, input 32 x 32 x 3 in [0, 255]),
the layer, one channel objective per image (batch 16: channel `3i mod depth` for image `i`),
the image size, Adam(0.05, epsilon 1e-8), no regularizers, no ReLU-gradient redirection.
Timing excludes compiling: every contender is built and run a few steps first; Xplique's
per-call trace is left out by timestamps (its rate is between warm steps); each timed run is
about {fv_seconds} s of steps.
"""


def report(results: dict, sizes: Sizes, out: Path, figure: Path, args, fig_json: Path) -> None:
    m = results["machine"]
    th = results["threads"]
    lines = ["# Benchmarks: speed against Xplique and tf-keras-vis, the Jacobian, the inversion", "",
             "Written by `make bench` (`benchmarks/bench_peers.py`; do not edit by hand: run it again). "
             "Issue 11's targets are checked against the numbers below; every figure is a ratio measured side "
             "by side in one process (interleaved rounds, the median of the per-round ratios), except the cold "
             "starts and peak memory, which need a fresh process each.", ""]
    if args.smoke:
        lines += ["**SMOKE RUN: tiny sizes, one round; the numbers mean nothing.**", ""]
    lines += ["## Machine and settings", "",
              f"- CPU: {m['cpu']}; {m['cpu_count']} CPUs (affinity {m['affinity']}); {m['platform']}",
              f"- load average (1 min) at the start {results['load_start']}, at the end {results['load_end']} "
              "(the machine is shared: other processes ran during the benchmark; see the load beside each section)",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
              f"- TensorFlow threads: intra-op {th['tf_intra_op']}, inter-op {th['tf_inter_op']}"
              + (f" ({th['note']})" if th.get("note") else "") + f"; oneDNN: {m['onednn']}",
              "- BLAS (NumPy/SciPy, through threadpoolctl): " + ("; ".join(
                  f"{b['internal_api']} {b['version']} ({b['architecture']}), {b['num_threads']} thread(s)"
                  for b in th["blas"]) or "not reported"),
              "- environment: " + (", ".join(f"`{k}={v}`" for k, v in th["env"].items())
                                   or "none of the thread variables set"),
              f"- rounds: {sizes.fv_rounds} (FV), {sizes.rounds} (the rest); wall time of the script "
              f"{results['wall_s'] / 60:.1f} min" + (
                  f", of `make bench` {results['make_wall_s'] / 60:.1f} min (from make's start: the bench venv's "
                  "creation is included only when it did not exist yet)" if results.get("make_wall_s") else ""),
              ""]
    lines += ["## Targets (issue 11)", "", "| target | measured | status |", "|---|---|---|"]
    for target, measured, ok in targets(results):
        lines.append(f"| {target} | {measured} | {status_word(ok)} |")
    lines += ["", f"![benchmarks]({os.path.relpath(figure, out.parent)})", "",
              f"Raw numbers: `{os.path.relpath(fig_json, out.parent)}`.", ""]

    fv = results.get("fv")
    if fv:
        order = ["ours", "floor", "xplique", "xplique (own transforms)", "tf-keras-vis"]
        present = {name for row in fv["rows"] for name in row["rates"]}
        names = [n for n in order if n in present] + sorted(present - set(order))
        peers = results["peers"]
        lines += [f"## 1. Feature visualization: steps/s ({fv['model']}, layer {fv['layer']}, "
                  f"{fv['image_shape'][0]} px, depth {fv['depth']})", "",
                  "Steps/s (median over rounds; batch 16 = 16 objectives, one image each: multiply by 16 for "
                  "target-steps/s) and **ours / other** (the median of the per-round ratios; > 1 means ours is "
                  "faster). Peers installed: " + ", ".join(f"{k} {'yes' if v else 'no (rows skipped)'}"
                                                           for k, v in peers.items()) + ".", ""]
        head = "| row | " + " | ".join(f"{n} steps/s" for n in names) + " | " + \
            " | ".join(f"ours / {n}" for n in names if n != "ours") + " | load |"
        lines += [head, "|" + "---|" * (2 + 2 * len(names) - 1)]
        for row in fv["rows"]:
            lines.append(f"| {row['label']} | " + " | ".join(fmt(row["rates"].get(n), 3) for n in names) + " | "
                         + " | ".join(fmt(row["ratios"].get(n), 3) for n in names if n != "ours")
                         + f" | {min(row['load'])}-{max(row['load'])} |")
        lines += ["", "Set-up (build + compile + first steps) seconds, first row of each kind: " + "; ".join(
            f"{row['label']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["setup_s"].items())
            for row in fv["rows"][:1] + fv["rows"][len(FV_ROWS):len(FV_ROWS) + 1]), ""]
        lines += [STATIC_METHOD.format(fv_seconds=sizes.fv_seconds).strip(), ""]

    jac = results.get("jac")
    if jac:
        lines += ["## 2. Feature Jacobian: ours vs a per-feature loop vs the limit", "",
                  "- **ours**: `ifv.feature_jacobian(model, layer, params, param, features=range(k))`, warm "
                  "(its compiled blocks traced before the rounds; default block size `default_chunk`; the "
                  "vectorized (pfor) blocks, what every call of a structure after its first runs: "
                  "`LUCID_IFV_JACOBIAN=pfor` in this section, the first call's tiled blocks are in the cold "
                  "start table).",
                  "- **loop**: one compiled gradient per feature (`tf.function` of the forward and the backward "
                  "pass of `sum_b f[b, i]`, called k times from Python). Its cost is k identical calls, so it is "
                  "timed on the first `loop rows` features and scaled to k (column 'loop rows').",
                  "- **limit**: one forward pass at batch B plus k backward passes at the best throughput "
                  "measured for a backward pass: `t_fwd(B) + k min(b_c, b_1)`, with `b_c = (t_fwd+bwd(B c) - "
                  "t_fwd(B c)) / c` the backward cost per row in one batched pass over `c` tiled copies of the "
                  "batch (each copy with the one-hot cotangent of another feature; an ordinary, not "
                  "vectorized, backward pass) and `b_1 = t_fwd+bwd(B) - t_fwd(B)` that of one copy (each "
                  "timing the best of 2 runs, per round). It is "
                  "what a Jacobian costs if the k backward passes ran as one batch with no overhead and no "
                  "repeated forward pass. It is a reference, not a proven bound: `pfor` (ours) vectorizes "
                  "the k backward passes over one shared forward, which can beat an ordinary batched pass, "
                  "and its blocks use their own max-pool gradient (window masks computed once per block, "
                  "`lucid_ifv/max_pool_gradient.py`), where the limit's ordinary pass runs TensorFlow's "
                  "`MaxPoolGrad` (docs/performance.md).",
                  "- ours / limit and loop / ours are medians of per-round ratios; the Jacobians of ours "
                  "and of the loop agree (max relative difference in the table).", ""]
        for cfg in jac["configs"]:
            lines += [f"### {cfg['model']}, {cfg['layer']} (depth {cfg['depth']}), batch {cfg['batch']}, "
                      f"{cfg['image_shape'][0]} px, D = {cfg['dim']} parameters per sample, limit tile c = "
                      f"{cfg['tile']}, load {min(cfg['load'])}-{max(cfg['load'])}", "",
                      f"Backward cost per row: {fmt(cfg['limit_row_batched'])} s batched over {cfg['tile']} "
                      f"copies, {fmt(cfg['limit_row_single'])} s for one copy (the limit uses the smaller, "
                      "per round).", "",
                      "| k | ours s | loop s | limit s | ours / limit | loop / ours | rounds | loop rows | "
                      "block size | max rel. diff | first call s (warm process) |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in cfg["rows"]:
                lines.append(f"| {r['k']} | {fmt(r['ours'])} | {fmt(r['loop'])} | {fmt(r['limit'])} | "
                             f"{fmt(r['ours_over_limit'])} | {fmt(r['loop_over_ours'])} | {r['rounds']} | "
                             f"{r['loop_rows_timed']} | {r['chunk']}{traced(r)} | {fmt(r['max_rel_diff'], 2)} | "
                             f"{fmt(r['first_call_in_warm_process'])} |")
            kmax = max(r["k"] for r in cfg["rows"])
            lines.append("")
            lines.append(f"Batch {cfg['batch']}: the largest Jacobian here is {cfg['batch']} x {kmax} x {cfg['dim']} "
                         f"float32 = {cfg['batch'] * kmax * cfg['dim'] * 4 / 2**20:.0f} MB"
                         + (" (the 224 px graph runs one sample at a time to fit the 15-minute budget: its k = 512 "
                            "Jacobian alone takes over a minute here)" if cfg["model"] == "inceptionv1_224" else "")
                         + ".")
            measured = [r["k"] for r in cfg["rows"]]
            too_big = [k for k in (16, 64, 256, 512) if k > cfg["depth"]]
            left_out = [k for k in (16, 64, 256, 512) if k <= cfg["depth"] and k not in measured]
            if too_big and not args.smoke:
                lines.append(f"\nk = {', '.join(map(str, too_big))}: more than this layer's {cfg['depth']} features.")
            if left_out and not args.smoke:
                lines.append(f"\nk = {', '.join(map(str, left_out))}: left out to keep `make bench` within its "
                             "15 minutes (`--full` measures them).")
            lines.append("")
        once = [(c[0], c[6]) for c in sizes.jac_configs if c[6]]
        if once:
            lines += ["Timed in one round only (budget): " + "; ".join(f"{n} k = {list(ks)}" for n, ks in once)
                      + ". Their compiled block is the one of the smaller k (same block size), so the single "
                      "run is warm.", ""]
    cold = results.get("cold")
    if cold:
        lines += ["### Cold start and peak memory (one fresh process per row)", "",
                  "The process loads the model and runs one forward pass (TensorFlow's first-run costs paid), "
                  "then times the **first answer**: `feature_jacobian` (trace + first run) or `ifv.invert` of "
                  "a batch of images with a `params_L2` prior; then a second call (fresh images for the "
                  "inversion, the same params for the Jacobian), which compiles the vectorized blocks "
                  "(`jacobian.block_kind`: a structure's first call runs tiled blocks, cheap to trace), and "
                  "a third ('warm'). Peak = growth of the peak RSS (VmHWM, reset "
                  "before the call) over the RSS before it; process peak = the largest VmHWM of the process "
                  "(model loading included; `ru_maxrss` is not used: after `fork` + `exec` it keeps the "
                  "parent's peak).", "",
                  "| what | model, layer | batch | k | first answer s (CPU s) | second call s | warm s | "
                  "peak MB | process peak MB | traces | load |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for w in cold:
            if "cold" not in w:
                lines.append(f"| {w['kind']} | {w['model']}, {w['layer']} | {w['batch']} | {w['k']} | failed: "
                             f"{w.get('error', '')[:120]} | | | | | | |")
                continue
            lines.append(f"| {w['kind']} | {w['model']}, {w['layer']} | {w['batch']} | {w['k']} | {w['cold']:.2f} "
                         f"({w['cold_cpu']:.1f}) | {w.get('second', float('nan')):.2f} | {w['warm']:.2f} | "
                         f"{w['peak_mb']:.0f} | "
                         f"{w['process_peak_mb']:.0f} | {w['traces']} | {w['loadavg']} |")
        lines.append("")

    inv = results.get("inv")
    if inv:
        lines += [f"## 3. Inversion end to end ({inv['model']}, {inv['layer']})", "",
                  "`ifv.invert(model, layer, params, param, features=range(k), prior=params_L2())` with fresh "
                  "arrays and a fresh parametrization (Fourier + decorrelated colour) every call, as a user "
                  "calls it, with the vectorized blocks (`LUCID_IFV_JACOBIAN=pfor`, as section 2); median "
                  "over rounds (first calls, which compile, excluded and listed). One factor "
                  f"varied at a time from the base (size, batch, k) = {tuple(inv['base'])}. Compiled Jacobians "
                  f"traced during the timed rounds: {inv['retraces_during_rounds']}.", "",
                  "| size px | batch | k | seconds | per sample s | first call s | Jacobian | prior grads | Gram | "
                  "solve | other | Algorithm 1 (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in inv["rows"]:
            st = r["stages"]
            total = sum(v for k, v in st.items() if k != "Algorithm 1")
            share = lambda name: f"{100 * st[name] / total:.1f} %"  # noqa: E731
            lines.append(f"| {r['size']} | {r['batch']} | {r['k']} | {r['seconds']:.3g} | {r['per_sample']:.3g} | "
                         f"{r['first_call']:.3g} | {share('Jacobian')} | {share('prior gradients')} | "
                         f"{share('Gram')} | "
                         f"{share('solve')} | {share('inputs')} | {st['Algorithm 1']:.3g} |")
        lines += ["", "Stage shares are of one staged run (the stages `ifv.invert` runs, timed one by one: "
                  "'other' = turning the realization into parameters); Algorithm 1 (spectra of `J J^T` and "
                  "`estimate_trivial_space`, run when estimating a critical space, not by `invert`) is given in "
                  "seconds beside them.", "",
                  "Growth (log-log slope of the time of a call against the factor varied): " + "; ".join(
                      f"{name}: {s['slope']:.2f} over {[p[0] for p in s['points']]}"
                      for name, s in inv["sweeps"].items()) + ". Per pixel the Jacobian grows with D = the "
                  "parameters per sample (size^2): a slope of 2 in the size is linear in pixels.", ""]
        if inv.get("large"):
            lg = inv["large"]
            st = lg["stages"]
            lines += [f"Stage times at k = {lg['k']} ({lg['model']}, {lg['layer']}, batch {lg['batch']}, "
                      f"D = {lg['dim']}; the Jacobian is the warm ours run of section 2): " + ", ".join(
                          f"{k} {v:.3g} s" for k, v in st.items()) + ".", ""]
    findings = results.get("findings")
    if findings:
        lines += ["## Reading the numbers", ""] + findings + [""]
    lines += ["## Reproduce", "",
              "    make bench                      # bench venv (peers installed there only), then this report",
              "    BENCH_ARGS=--smoke make bench   # every code path at tiny sizes (into out/bench-smoke/)",
              "    python -m pytest -q tests/test_bench_smoke.py", "",
              "The bench environment (`$(BENCH_VENV)`, default `out/venv-bench`) is the package "
              "(`pip install -e .`) plus the peers, installed with the package's own resolved versions as pip "
              "constraints, so the peers cannot change TensorFlow, NumPy or SciPy. Xplique 2.0.2 declares "
              "`tensorflow[and-cuda]<=2.20` (and scipy <= 1.15.3, scikit-image <= 0.25.2); it is installed with "
              "`--no-deps` and its runtime imports are installed beside it (`deprecated`, `einops`, "
              "`opencv-python-headless` for `cv2`, `scikit-learn<=1.7.2`, `tensorflow-probability<=0.25` and "
              "`tf-keras` matching TensorFlow, which its attribution modules import at `import xplique`); "
              "`ruff` (a linter it lists) is not installed. tf-keras-vis 0.8.7 installs normally. Neither is a "
              "dependency of `lucid-ifv`.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def findings(results: dict) -> list:
    """A few sentences computed from the numbers (no hand-written claims about them)."""
    out = []
    fv = results.get("fv")
    if fv:
        slow = [r for r in fv["rows"] if r["ratios"].get("xplique", 2.0) < 1.5]
        if slow:
            out.append("- FV rows under 1.5x Xplique: " + "; ".join(
                f"{r['label']}: ours {r['ratios']['xplique']:.2f}x Xplique, ours at {r['ratios']['floor']:.2f} and "
                f"Xplique at about {r['ratios']['floor'] / r['ratios']['xplique']:.2f} of the floor" for r in slow)
                + ". Where both are near the floor, the step is the model's forward and backward pass "
                "(the same kernels for everyone): the per-step overheads that separate the libraries at "
                "batch 1 are a small part of it, and no implementation can be 1.5x faster than the floor.")
    jac = results.get("jac")
    if jac:
        for cfg in jac["configs"]:
            worst = max(cfg["rows"], key=lambda r: r["ours_over_limit"])
            blocks = -(-worst["k"] // worst["chunk"]) if worst.get("chunk") else None
            extra = ""
            if blocks:
                extra = (f" At k = {worst['k']} ours runs {blocks} blocks of {worst['chunk']} rows, each with its own "
                         f"forward pass ({blocks} x {cfg['forward']:.3g} s = {blocks * cfg['forward']:.2g} s of "
                         f"{worst['ours']:.3g} s).")
            out.append(f"- Jacobian, {cfg['model']}: ours is {worst['ours_over_limit']:.2f}x the limit at its worst "
                       f"(k = {worst['k']}); the per-feature loop takes " + ", ".join(
                           f"{r['loop_over_ours']:.2f}x ours' time at k = {r['k']}" for r in cfg["rows"]) + "." + extra)
    for w in results.get("cold", []):
        if "cold" in w and w["kind"] == "jacobian":
            out.append(f"- First answer, {w['model']} {w['layer']} batch {w['batch']} k = {w['k']}: {w['cold']:.1f} s "
                       f"(tiled blocks); the second call {w.get('second', float('nan')):.1f} s (it compiles the "
                       f"vectorized blocks), later calls {w['warm']:.1f} s.")
    inv = results.get("inv")
    if inv:
        shares = [r["stages"]["Jacobian"] / sum(v for k, v in r["stages"].items() if k != "Algorithm 1")
                  for r in inv["rows"]]
        verdict = ("the rest (inputs, prior gradients, Gram, solve) cannot matter much" if min(shares) >= 0.9
                   else "the rest (inputs, prior gradients, Gram, solve) is not negligible in some of them")
        out.append(f"- Inversion: the Jacobian takes {100 * min(shares):.0f}-{100 * max(shares):.0f} % of a call "
                   f"in the configurations measured: {verdict}.")
    return out


# ============================================================================================


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every code path at tiny sizes, one round")
    parser.add_argument("--full", action="store_true", help="every k on both models and every cold start "
                                                                "(about twice as long)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; smoke 1)")
    parser.add_argument("--out", type=Path, default=None, help="report (default docs/benchmarks.md; smoke: "
                                                                "out/bench-smoke/benchmarks.md)")
    parser.add_argument("--fig-dir", type=Path, default=None, help="figure folder (default docs/results/benchmarks)")
    parser.add_argument("--sections", nargs="+", default=["fv", "jac", "cold", "inv"],
                        choices=["fv", "jac", "cold", "inv"])
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (inter-op 1)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS (OpenBLAS/MKL) threads")
    parser.add_argument("--no-peers", action="store_true", help="skip Xplique and tf-keras-vis even if installed")
    parser.add_argument("--make-start", type=float, default=None, help="epoch seconds `make bench` started")
    parser.add_argument("--json", type=Path, default=None, help="raw results (default results.json beside the figure)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-write the report and figure from a results.json of an earlier run (no measuring)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(json.loads(args.worker))
        print("RESULT " + json.dumps(result), flush=True)
        return result
    sizes = smoke_sizes() if args.smoke else full_sizes() if args.full else Sizes()
    if args.rounds is not None:
        sizes.rounds = sizes.fv_rounds = args.rounds
    default_out = ROOT / ("out/bench-smoke/benchmarks.md" if args.smoke else "docs/benchmarks.md")
    out = args.out or default_out
    # the figure beside the report: docs/results/benchmarks/ for docs/benchmarks.md
    fig_dir = args.fig_dir or out.parent / "results" / "benchmarks"
    figure = fig_dir / "benchmarks.png"
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if "sizes" in results:
            sizes = Sizes(**results["sizes"])
        results["findings"] = findings(results)
        make_plot(results, figure)
        report(results, sizes, out, figure, args, args.from_json)
        log(f"# wrote {out} and {figure} from {args.from_json}")
        return results
    t_start = time.perf_counter()
    results = {"load_start": loadavg(), "sizes": dataclasses.asdict(sizes)}
    results["threads"] = configure_threads(args.threads, args.blas_threads)
    results["machine"] = machine_record()
    results["peers"] = {"xplique": False, "tf_keras_vis": False} if args.no_peers else peers_available()
    log(f"# {results['machine']['cpu']}, threads {results['threads']}, peers {results['peers']}")
    section_s = results["section_s"] = {}

    def timed_section(name, fn):
        t0 = time.perf_counter()
        value = fn()
        section_s[name] = time.perf_counter() - t0
        log(f"# section {name}: {section_s[name]:.0f} s")
        return value

    if "fv" in args.sections:
        results["fv"] = timed_section("fv", lambda: bench_fv(sizes, results["peers"]))
    kept = None
    if "jac" in args.sections:
        with vectorized_blocks():
            jac = timed_section("jac", lambda: bench_jacobian(
                sizes, keep_large=sizes.inv_large if "inv" in args.sections else None))
        kept = jac.pop("kept")
        results["jac"] = jac
    if "cold" in args.sections:
        results["cold"] = timed_section("cold", lambda: run_workers(sizes, args))
    if "inv" in args.sections:
        with vectorized_blocks():
            results["inv"] = timed_section("inv", lambda: bench_inversion(sizes, kept))
    kept = None
    results["load_end"] = loadavg()
    results["wall_s"] = time.perf_counter() - t_start
    if args.make_start:
        results["make_wall_s"] = time.time() - args.make_start
    results["findings"] = findings(results)
    make_plot(results, figure)
    raw = args.json or fig_dir / "results.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1, default=str))
    report(results, sizes, out, figure, args, raw)
    log(f"# wrote {out} and {figure} in {results['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    # Thread pools are pinned before NumPy or TensorFlow load (OpenBLAS reads these at load time).
    for var, value in (("OMP_NUM_THREADS", "2"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                       ("TF_CPP_MIN_LOG_LEVEL", "2")):
        os.environ.setdefault(var, value)
    main()
