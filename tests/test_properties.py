"""Property-based tests (hypothesis) of every public entry point that takes user data.

The promise (issue 10, docs/reliability.md): whatever the input, the result is either valid
or a one-line error of the documented type that names the problem; never a traceback from
deep inside NumPy, Pillow or TensorFlow, never a silently wrong value. ``max_examples`` is
modest so that the file runs in well under a minute; the counts are in docs/reliability.md.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings  # in the test extras (setup.cfg)
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lucid_ifv import imageio, sampling
from lucid_ifv import objectives as obj
from lucid_ifv.ifv.invert import _check_images

SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message, repr(message)
    assert "allow_pickle" not in message and "Traceback" not in message
    return message


# -- image and array files ---------------------------------------------------------------------
def _png(array, mode, **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    (Image.fromarray(array) if mode is None else Image.fromarray(array, mode)).save(buf, format="PNG", **save)
    return buf.getvalue()


def _seed_files() -> dict:
    """Valid files of each kind the loaders read, to be mutated."""
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = (rng.random((6, 5)) * 255).astype(np.uint8)
    rgb = (rng.random((6, 5, 3)) * 255).astype(np.uint8)
    opaque = np.concatenate([rgb, np.full((6, 5, 1), 255, np.uint8)], -1)
    palette = io.BytesIO()
    Image.fromarray(rgb, "RGB").convert("P").save(palette, format="PNG")
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, rng.random((2, 6, 5, 3)).astype(np.float32))
    np.savez(npz, images=rng.random((1, 6, 5, 1)), targets=np.ones((1, 4)))
    return {
        ".png": [_png(grey, "L"), _png(rgb, "RGB"), _png(opaque, "RGBA"), palette.getvalue(),
                 _png((grey.astype(np.uint16) * 257), None)],
        ".npy": [npy.getvalue()],
        ".npz": [npz.getvalue()],
    }


SEEDS = _seed_files()
MAGIC = {".png": imageio.PNG_MAGIC, ".npy": imageio.NPY_MAGIC, ".npz": imageio.ZIP_MAGIC}


@st.composite
def file_bytes(draw, suffix: str) -> bytes:
    """A valid file of that kind truncated, with bytes overwritten or inserted, or random
    bytes after (or instead of) the right signature."""
    kind = draw(st.sampled_from(["valid", "truncate", "overwrite", "insert", "random", "magic+random"]))
    data = bytearray(draw(st.sampled_from(SEEDS[suffix])))
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "overwrite":
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=32))
    elif kind == "random":
        data = bytearray(draw(st.binary(max_size=300)))
    elif kind == "magic+random":
        data = bytearray(MAGIC[suffix] + draw(st.binary(max_size=300)))
    return bytes(data)


def check_image_result(images, path: Path) -> None:
    # float64 only from an array file that holds float64 (a render's with --float64-converge)
    floats = (np.float32, np.float64) if path.suffix in (".npy", ".npz") else (np.float32,)
    assert images.dtype in floats and images.ndim == 4 and images.shape[-1] in (1, 3)
    assert images.size and np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


@pytest.fixture(scope="module")
def file_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("suffix", [".png", ".npy", ".npz"])
@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_image_files_load_or_fail_in_one_line(suffix, data, file_dir):
    """`load_images` (and so `read_image_file`, `load_array`) on damaged files."""
    path = file_dir / f"f{suffix}"
    path.write_bytes(data.draw(file_bytes(suffix)))
    channels = data.draw(st.sampled_from([None, 1, 3]))
    try:
        images = imageio.load_images([path], channels=channels)
    except (ValueError, FileNotFoundError) as err:
        assert str(path) in one_line(err)
        return
    check_image_result(images, path)
    if channels is not None:
        assert images.shape[-1] == channels


@settings(max_examples=100, **SETTINGS)
@given(arr=hnp.arrays(st.sampled_from([np.float32, np.float64, np.uint8, np.int16, np.bool_]),
                      hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=4)),
       key=st.sampled_from(["images", "targets"]))
def test_arrays_in_npz_load_or_fail_in_one_line(arr, key, file_dir):
    """Any numeric array under any name: images must be 1 or 3 channels in [0, 1]."""
    path = file_dir / "a.npz"
    np.savez(path, **{key: arr})
    try:
        images = imageio.load_images([path])
    except ValueError as err:
        assert str(path) in one_line(err)
        return
    assert key == "images"
    check_image_result(images, path)
    np.testing.assert_array_equal(images.reshape(-1), arr.astype(np.float32).reshape(-1))


@settings(max_examples=60, **SETTINGS)
@given(image=hnp.arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3])),
                        elements=st.floats(0, 1)))
def test_save_png_then_load_is_quantize_8bit(image, file_dir):
    path = imageio.save_png(image, file_dir / "round.png")
    np.testing.assert_array_equal(imageio.load_images([path])[0], imageio.quantize_8bit(image))
    np.testing.assert_array_equal(imageio.load_images([path], channels=3)[0],
                                  np.repeat(imageio.quantize_8bit(image), 3 // image.shape[-1], -1))


@settings(max_examples=100, **SETTINGS)
@given(images=hnp.arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3),
                                               st.sampled_from([1, 3])), elements=st.floats(0, 1, width=32)),
       grey=st.booleans(), channels=st.sampled_from([None, 1, 3]))
def test_to_channels_converts_exactly_or_refuses(images, grey, channels):
    if grey:
        images = np.repeat(images[..., :1], images.shape[-1], -1)
    try:
        out = imageio.to_channels(images, channels, "x")
    except ValueError as err:
        assert channels == 1 and images.shape[-1] == 3 and not grey and "colour image" in one_line(err)
        return
    if channels is None or channels == images.shape[-1]:
        assert out is images
    elif channels == 3:
        np.testing.assert_array_equal(out, np.repeat(images, 3, -1))
    else:
        np.testing.assert_array_equal(np.repeat(out, 3, -1), images)  # R = G = B: nothing lost


# -- invert's image check ------------------------------------------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(images=hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8]),
                         hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)))
def test_invert_accepts_exactly_finite_images_in_unit_range(images):
    """`ifv.invert`'s first step: refused iff empty, non-finite or outside [0, 1]."""
    as_float = images.astype(np.float64)
    valid = as_float.size > 0 and np.isfinite(as_float).all() and as_float.min() >= 0 and as_float.max() <= 1
    try:
        _check_images(images)
    except ValueError as err:
        one_line(err)
        assert not valid
        return
    assert valid


# -- objectives: targets and indices ---------------------------------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(t=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
                    elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_feature_objective_targets(t, small_model):
    """Targets are accepted iff [k] or [B, k] with k = 6 (conv2), finite and non-zero rows."""
    t32 = t.astype(np.float32)
    valid = (t.ndim in (1, 2) and t.size > 0 and t.shape[-1] == 6 and np.isfinite(t32).all()
             and (np.linalg.norm(np.atleast_2d(t32).astype(np.float64), axis=-1) > 0).all())
    try:
        obj.feature_objective("conv2", t, model=small_model)
    except ValueError as err:
        one_line(err)
        assert not valid
        return
    assert valid


ACTS = tf.constant(np.random.default_rng(0).normal(size=(2, 5, 4, 7)).astype(np.float32))
LOGITS = tf.constant(np.random.default_rng(1).normal(size=(2, 7)).astype(np.float32))
T = {"conv": ACTS, "dense": LOGITS}.__getitem__
INDEX = st.one_of(st.integers(-10, 12), st.floats(-2, 8), st.sampled_from([None, True, "3", 2.0]),
                  st.integers(0, 8).map(np.int64))


def _is_index(value, size) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < size)


@settings(max_examples=150, **SETTINGS)
@given(n=INDEX, x=st.one_of(st.none(), INDEX), y=st.one_of(st.none(), INDEX),
       batch=st.one_of(st.none(), st.integers(-2, 3)))
def test_channel_and_neuron_indices(n, x, y, batch):
    """`channel`/`neuron` on [2, 5, 4, 7] activations: a value equal to NumPy's indexing, or
    our one-line ValueError (never TensorFlow's error, never a silent -1 or an empty slice)."""
    acts = ACTS.numpy() if batch is None else ACTS.numpy()[batch: batch + 1] if 0 <= batch < 2 else None
    batch_ok = batch is None or 0 <= batch < 2
    try:
        value = float(obj.channel("conv", n, batch=batch)(T))
    except ValueError as err:
        one_line(err)
        assert not (_is_index(n, 7) and batch_ok)
    else:
        assert _is_index(n, 7) and batch_ok
        assert math.isclose(value, float(acts[..., n].mean()), rel_tol=1e-5, abs_tol=1e-6)
    try:
        value = float(obj.neuron("conv", n, x=x, y=y, batch=batch)(T))
    except ValueError as err:
        one_line(err)
        assert not (_is_index(n, 7) and batch_ok and (x is None or _is_index(x, 5)) and (y is None or _is_index(y, 4)))
    else:
        assert _is_index(n, 7) and batch_ok and (x is None or _is_index(x, 5)) and (y is None or _is_index(y, 4))
        xi, yi = 5 // 2 if x is None else x, 4 // 2 if y is None else y
        assert math.isclose(value, float(acts[:, xi, yi, n].mean()), rel_tol=1e-5, abs_tol=1e-6)


@settings(max_examples=100, **SETTINGS)
@given(label=INDEX, features=st.one_of(st.none(), st.lists(st.integers(-3, 9), max_size=4)))
def test_class_logit_and_feature_indices(label, features):
    try:
        value = float(obj.class_logit("dense", label)(T))
    except ValueError as err:
        one_line(err)
        assert not _is_index(label, 7)
    else:
        assert _is_index(label, 7) and math.isclose(value, float(LOGITS.numpy()[:, label].sum()), rel_tol=1e-5,
                                                    abs_tol=1e-5)
    valid = features is None or (len(features) > 0 and all(0 <= i < 7 for i in features)
                                 and len(set(features)) == len(features))  # repeats: refused
    try:
        f = obj.feature_response(LOGITS, "identity", features).numpy()
    except ValueError as err:
        one_line(err)
        assert not valid
    else:
        assert valid
        np.testing.assert_array_equal(f, LOGITS.numpy() if features is None else LOGITS.numpy()[:, features])


# -- sampling ------------------------------------------------------------------------------------
@settings(max_examples=100, **SETTINGS)
@given(k=st.one_of(st.integers(-1, 40), st.floats(0, 5), st.none()), n=st.one_of(st.integers(-1, 6), st.none()),
       seed=st.one_of(st.integers(-1, 2**32), st.none(), st.text(max_size=2)),
       sparseness=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1)))
def test_sample_hoyer_targets(k, n, seed, sparseness):
    """Unit, non-negative rows with the requested sparseness, or a one-line ValueError."""
    try:
        t, s = sampling.sample_hoyer_targets(k, n, seed, sparseness)
    except ValueError as err:
        one_line(err)
        return
    assert t.shape == (n, k) and s.shape == (n,) and (t >= 0).all()
    if n:
        np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-9)
        np.testing.assert_allclose(sampling.hoyer_sparseness(t), s, atol=1e-6)
        if sparseness is not None:
            np.testing.assert_allclose(s, sparseness)


@settings(max_examples=100, **SETTINGS)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                    elements=st.floats(-1e6, 1e6) | st.sampled_from([np.nan, np.inf, 0.0])),
       sparseness=st.floats(-0.5, 1.5) | st.sampled_from([0.0, 1.0, np.nan]), nonneg=st.booleans())
def test_hoyer_project(x, sparseness, nonneg):
    try:
        s = sampling.hoyer_project(x, sparseness if x.ndim < 2 else np.full(x.shape[0], sparseness), nonneg)
    except ValueError as err:
        one_line(err)
        return
    assert s.shape == x.shape
    np.testing.assert_allclose(np.linalg.norm(s.reshape(-1, x.shape[-1]), axis=1), 1, atol=1e-9)
    np.testing.assert_allclose(sampling.hoyer_sparseness(s), sparseness, atol=1e-6)
    if nonneg:
        assert (s >= 0).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("x, sparseness", [([33.0, 33.0], 0.5), ([33.0] * 4, 0.3), ([33.0] * 4, 0.9)])
def test_hoyer_project_of_a_constant_vector(x, sparseness):
    """Found by `test_hoyer_project`: ``hoyer_project([33, 33], 0.5)`` raised the RuntimeError
    of its own guard and ``[33] * 4`` at 0.9 an IndexError (the constant-row test compared the
    rounding of the shift with an absolute 1e-30; now relative to the input's scale)."""
    s = sampling.hoyer_project(np.array(x), sparseness)
    np.testing.assert_allclose(sampling.hoyer_sparseness(s), sparseness, atol=1e-6)


@settings(max_examples=100, **SETTINGS)
@given(k=st.one_of(st.integers(-1, 20), st.just(2.5)), features=st.one_of(st.none(), st.lists(st.integers(-3, 25))),
       n=st.integers(-1, 5), nonneg=st.booleans())
def test_canonical_targets_and_random_unit_vectors(k, features, n, nonneg):
    try:
        c = sampling.canonical_targets(k, features)
    except ValueError as err:
        one_line(err)
    else:
        rows = range(k) if features is None else features
        assert c.shape == (len(rows), k) and all(c[i, j] == 1 and c[i].sum() == 1 for i, j in enumerate(rows))
    try:
        v = sampling.random_unit_vectors(k, n, 0, nonneg)
    except ValueError as err:
        one_line(err)
    else:
        assert v.shape == (n, k)
        if n:
            np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-12)
            assert not nonneg or (v >= 0).all()


# -- the command line's numbers ------------------------------------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(option=st.sampled_from(["--prior", "--converge", "--cossim-pow", "--decay-power", "--relu-beta"]),
       value=st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-4, -1e-4]),
       spelling=st.sampled_from(["repr", "e", "upper"]))
def test_cli_float_options_parse_and_check(option, value, spelling):
    """Any float spelling reaches our check (negative numbers and -inf parse as values), and
    the check accepts exactly the finite values >= (or >) the minimum."""
    from lucid_ifv.cli import build_parser, check_numbers

    text = {"repr": repr(value), "e": f"{value:e}", "upper": repr(value).upper()}[spelling]
    args = build_parser().parse_args(["render", option, text, "--out", "x"])
    dest = option[2:].replace("-", "_")
    parsed = getattr(args, dest)
    assert parsed == float(text) or (math.isnan(parsed) and math.isnan(float(text)))
    strict = option in ("--converge", "--relu-beta")
    valid = math.isfinite(parsed) and (parsed > 0 if strict else parsed >= 0)
    try:
        check_numbers(args)
    except ValueError as err:
        assert option in one_line(err) and not valid
        return
    assert valid


@settings(max_examples=100, **SETTINGS)
@given(option=st.sampled_from(["--channel", "--batch", "--adam", "--lbfgs", "--seed", "--max-lbfgs"]),
       value=st.integers(-10**12, 10**12) | st.integers(-3, 3))
def test_cli_int_options_parse_and_check(option, value):
    from lucid_ifv.cli import INT_MINIMUM, build_parser, check_numbers

    args = build_parser().parse_args(["render", option, str(value), "--out", "x"])
    try:
        check_numbers(args)
    except ValueError as err:
        assert option in one_line(err) and value < INT_MINIMUM[option[2:].replace("-", "_")]
        return
    assert value >= INT_MINIMUM[option[2:].replace("-", "_")]


@settings(max_examples=100, **SETTINGS)
@given(junk=st.text(min_size=1, max_size=12))
def test_cli_never_tracebacks_on_junk_values(junk, capsys, file_dir):
    """Anything as a number is one line from argparse or from us (status 2), before any work
    (the --out given is a file, so even valid numbers stop there)."""
    from lucid_ifv.cli import main

    assume(junk.strip() and not junk.startswith("--"))
    (file_dir / "a_file").write_text("x")
    rc = main(["render", "--adam", junk, "--prior", junk, "--out", str(file_dir / "a_file")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
