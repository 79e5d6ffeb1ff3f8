"""The rest of Lucid's param API (issue 9): arithmetic and slicing of parametrizations,
shared low-res tensors, naive, laplacian_pyramid, grayscale_image_rgb, image(alpha=True),
image_sample and cppn; parity with Lucid 0.3.10's own code where it is deterministic."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import tensorflow as tf

from lucid_ifv import param


@pytest.fixture
def lucid(lucid_param, monkeypatch):
    """Lucid's param modules, with the TF1 names their graphs use."""
    monkeypatch.setattr(tf.image, "resize_bilinear", tf.compat.v1.image.resize_bilinear, raising=False)
    names = ("spatial", "color", "lowres", "images", "random")
    modules = {name: importlib.import_module(f"lucid.optvis.param.{name}") for name in names}
    return type("Lucid", (), modules)


def lucid_eval(build, values=()):
    """Build Lucid's tensor in a TF1 graph, set its variables (creation order) to
    ``values``, run it."""
    graph = tf.Graph()
    with graph.as_default():
        out = build()
        variables = tf.compat.v1.global_variables()
        assert len(variables) == len(values)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run([v.assign(x) for v, x in zip(variables, values)])
            return sess.run(out)


def random_params(p, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=v.shape, scale=scale).astype(np.float32) for v in p.variables]


# -- low-res tensors, shared across the batch ---------------------------------------------
LOWRES_CASES = [  # shape, underlying shape, offset, per_sample
    ((2, 16, 16, 3), (2, 4, 4, 3), None, True),
    ((2, 16, 12, 3), (2, 5, 3, 3), True, True),  # batch offset int(2 / 2 / 2) = 0
    ((2, 8, 8, 3), (2, 4, 4, 3), 1, False),  # Lucid offsets the batch too: both samples read sample 0
    ((6, 16, 16, 3), (1, 8, 8, 3), None, False),
    ((6, 16, 16, 3), (2, 8, 8, 3), None, False),
    ((6, 16, 16, 3), (2, 16, 8, 3), None, False),  # Lucid resizes axes in pairs: (batch, height), (width, channels)
    ((6, 16, 16, 3), (2, 8, 8, 3), True, False),  # batch offset int(6 / 2 / 2) = 1
    ((5, 12, 12, 3), (3, 4, 4, 3), [1, 2, 0, 0], False),
]


@pytest.mark.parametrize("shape,underlying,offset,per_sample", LOWRES_CASES)
def test_lowres_parity(lucid, shape, underlying, offset, per_sample):
    ours = param.lowres_tensor(shape, underlying, offset=offset, seed=0)
    (z,) = random_params(ours, seed=1)
    lucid_offset = list(offset) if isinstance(offset, list) else offset  # Lucid edits its list
    expected = lucid_eval(lambda: lucid.lowres.lowres_tensor(shape, underlying, offset=lucid_offset), [z])
    np.testing.assert_allclose(ours([z]).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert ours.per_sample == per_sample


def test_shared_lowres_interpolates_the_batch():
    """Underlying batch 2 over 6: sample i reads position i / 3, as TF1 resize_bilinear."""
    p = param.lowres_tensor((6, 4, 4, 3), (2, 4, 4, 3), seed=0)
    u = p.variables[0].numpy()
    weights = np.array([[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1], [0, 1], [0, 1]])
    np.testing.assert_allclose(p().numpy(), np.einsum("ij,j...->i...", weights, u), rtol=1e-6, atol=1e-7)
    one = param.lowres_tensor((6, 8, 8, 3), (1, 4, 4, 3), seed=0)
    images = one().numpy()
    assert np.all(images == images[:1]) and not one.per_sample
    assert not param.to_valid_rgb(one).per_sample


def test_lowres_module_reexports():
    from lucid_ifv.param import lowres

    assert lowres.lowres_tensor is param.spatial.lowres_tensor and param.lowres is lowres


# -- the Lucid composition: unique + sum(shared), arithmetic, slicing -----------------------
def test_lucid_shared_composition():
    shape = (6, 16, 16, 3)
    unique = param.fft_image(shape, seed=0)
    shared = [param.lowres_tensor(shape, (1, 8, 8, 3), seed=1), param.lowres_tensor(shape, (2, 4, 4, 3), seed=2)]
    p = param.to_valid_rgb(unique + sum(shared), decorrelate=True)
    assert p.shape == shape and not p.per_sample
    assert [id(v) for v in p.variables] == [id(unique.variables[0])] + [id(s.variables[0]) for s in shared]
    expected = param.to_valid_rgb(param.pixel_image(shape), decorrelate=True)(
        [unique().numpy() + shared[0]().numpy() + shared[1]().numpy()])
    np.testing.assert_allclose(p().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(p() * np.random.default_rng(0).normal(size=shape))
    grads = tape.gradient(loss, p.variables)
    assert all(g is not None and np.abs(g.numpy()).max() > 0 for g in grads)
    with pytest.raises(NotImplementedError, match="combination of parametrizations"):
        p.params_from_image(p().numpy())


def test_arithmetic_values():
    a = param.pixel_image((2, 4, 4, 3), seed=0)
    b = param.pixel_image((2, 4, 4, 3), seed=1)
    x, y = a().numpy(), b().numpy()
    c = np.array([1.0, 2.0, 3.0], np.float32)
    cases = {
        "a + b": (a + b, x + y), "a - b": (a - b, x - y), "a * b": (a * b, x * y), "a / 2": (a / 2, x / 2),
        "2 * a": (2 * a, 2 * x), "-a": (-a, -x), "1 - a": (1 - a, 1 - x), "2 / (a + 3)": (2 / (a + 3), 2 / (x + 3)),
        "c * a": (c * a, c * x), "a + tensor": (a + tf.constant(c), x + c),
        "np.float32 * a": (np.float32(2) * a, 2 * x),
        "a[..., :2]": (a[..., :2], x[..., :2]), "a[:, 1:3, ::2, 0]": (a[:, 1:3, ::2, 0], x[:, 1:3, ::2, 0]),
        "a[..., ::-1]": (a[..., ::-1], x[..., ::-1]), "(a + b)[..., 1:] * a[..., :2]":
            ((a + b)[..., 1:] * a[..., :2], (x + y)[..., 1:] * x[..., :2]),
    }
    for name, (p, expected) in cases.items():
        assert isinstance(p, param.CombinedParam), name
        assert p.shape == expected.shape, name
        np.testing.assert_allclose(p().numpy(), expected, rtol=1e-6, atol=1e-7, err_msg=name)
        assert p.per_sample, name
    assert 0 + a is a and a + 0 is a
    assert len(sum([a, b, a]).variables) == 2


def test_arithmetic_shares_variables_and_splits_params():
    a = param.pixel_image((2, 4, 4, 3), seed=0)
    b = param.fft_image((2, 4, 4, 3), seed=1)
    p = (a + b) * a - a[..., ::-1]
    assert [id(v) for v in p.variables] == [id(a.variables[0]), id(b.variables[0])]
    za, zb = random_params(p, seed=3)
    x, y = za, b([zb]).numpy()  # a is the pixels
    np.testing.assert_allclose(p([za, zb]).numpy(), (x + y) * x - x[..., ::-1], rtol=1e-5, atol=1e-6)
    params = [tf.constant(za), tf.constant(zb)]
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = tf.reduce_sum(p(params) ** 2)
    assert all(np.abs(g.numpy()).max() > 0 for g in tape.gradient(loss, params))


def test_structure_key_describes_the_composition():
    def pair(seed):
        return param.pixel_image((1, 4, 4, 3), seed=seed), param.fft_image((1, 4, 4, 3), seed=seed + 1)

    a, b = pair(0)
    a2, b2 = pair(5)
    assert (a + b).structure_key() == (a2 + b2).structure_key()  # values do not matter
    assert a[..., :3].structure_key() == a2[:, :, :, 0:3].structure_key()
    keys = [(a + b).structure_key(), (a - b).structure_key(), (a * b).structure_key(), (a / b).structure_key(),
            (b + a).structure_key(), (a + 2).structure_key(), (a + 3).structure_key(), (-a).structure_key(),
            a[..., :2].structure_key(), a[..., 1:].structure_key(), (a + a).structure_key()]
    assert None not in keys and len(set(keys)) == len(keys)
    c = param.pixel_image((1, 4, 4, 3), seed=9)
    assert ((a + c) * a).structure_key() != ((a + c) * c).structure_key()  # which input is reused
    assert (a + param.cppn(4, num_layers=1, seed=0)).structure_key() is None  # cppn has no key


def test_per_sample_of_compositions():
    a = param.pixel_image((2, 4, 4, 3), seed=0)
    assert (a + param.fft_image((2, 4, 4, 3), seed=1)).per_sample
    assert not (a + param.pixel_image((1, 4, 4, 3), seed=1)).per_sample  # broadcast along the batch
    assert not (a + param.lowres_tensor((2, 4, 4, 3), (1, 2, 2, 3), seed=1)).per_sample
    assert (a + np.zeros((2, 4, 4, 3))).per_sample
    assert not (a + np.zeros((3, 2, 4, 4, 3))).per_sample
    assert param.to_valid_rgb(a[..., :3]).per_sample and param.image(4).per_sample


def test_arithmetic_and_slicing_errors():
    a = param.pixel_image((2, 4, 4, 3), seed=0)
    with pytest.raises(ValueError, match=r"cannot be sliced along its batch axis \(got 0 for batch 2\)"):
        a[0]
    with pytest.raises(ValueError, match="batch axis"):
        a[:1, ..., :2]
    with pytest.raises(IndexError, match="leaves axis 3 .* empty"):
        a[..., 5:]
    with pytest.raises(IndexError, match="index 7 is out of range for axis 1 of size 4"):
        a[:, 7]
    with pytest.raises(IndexError, match="5 indices for a parametrization of shape"):
        a[:, 0, 0, 0, 0]
    with pytest.raises(TypeError, match="integers, slices and ..., got None"):
        a[None]
    with pytest.raises(TypeError):
        a + "red"
    with pytest.raises(ValueError, match=r"cannot combine shapes \(2, 4, 4, 3\) and \(5,\) with 'add'"):
        a + np.zeros(5)
    with pytest.raises(TypeError, match="not iterable"):
        list(a)


def test_convert_to_tensor_gives_the_current_image():
    p = param.image(6, batch=2, seed=0)
    np.testing.assert_array_equal(tf.convert_to_tensor(p).numpy(), p().numpy())
    with pytest.raises((TypeError, ValueError)):
        tf.convert_to_tensor(p, dtype=tf.int32)


def test_render_a_composition(small_model):
    """A per-sample composition renders through the compiled pipeline."""
    from lucid_ifv import objectives as obj
    from lucid_ifv.render import render_vis

    shape = (2, 16, 16, 3)
    p = param.to_valid_rgb(param.fft_image(shape, seed=0) + 0.5 * param.lowres_tensor(shape, (2, 4, 4, 3), seed=1),
                           decorrelate=True)
    result = render_vis(small_model, obj.channel("conv2", 1), p, transforms=[], thresholds=(10,), progress=False)
    assert result.objective[-1] > result.objective[0]


# -- naive, laplacian_pyramid ---------------------------------------------------------------
def test_naive_parity(lucid):
    shape = (2, 5, 6, 3)
    with pytest.warns(DeprecationWarning, match="renamed `pixel_image`"):
        ours = param.naive(shape, seed=0)
    assert isinstance(ours, param.PixelParam) and ours.per_sample
    (z,) = random_params(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = lucid_eval(lambda: lucid.spatial.naive(shape), [z])
    np.testing.assert_array_equal(np.asarray(ours([z])), expected)


@pytest.mark.parametrize("shape,n_levels", [((2, 16, 16, 3), 4), ((1, 12, 10, 3), 3)])
def test_laplacian_pyramid_parity(lucid, shape, n_levels):
    with pytest.warns(DeprecationWarning, match="renamed `laplacian_pyramid_image`"):
        ours = param.laplacian_pyramid(shape, n_levels=n_levels, seed=0)
    assert [tuple(v.shape) for v in ours.variables] == [
        (shape[0], shape[1] // 2 ** n, shape[2] // 2 ** n, 3) for n in range(n_levels)]
    z = random_params(ours, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = lucid_eval(lambda: lucid.spatial.laplacian_pyramid(shape, n_levels=n_levels), z)
    np.testing.assert_allclose(ours(z).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert ours.per_sample


def test_laplacian_pyramid_init_is_lucids_draw():
    shape = (2, 8, 8, 3)
    np.random.seed(4)
    expected = [0.01 * np.random.randn(2, 8 // k, 8 // k, 3).astype(np.float32) for k in (1, 2, 4)]
    ours = param.laplacian_pyramid_image(shape, n_levels=3, seed=4)
    for var, value in zip(ours.variables, expected):
        np.testing.assert_allclose(var.numpy(), value, rtol=1e-6)


def test_laplacian_pyramid_inverse_is_minimum_norm():
    p = param.laplacian_pyramid_image((1, 4, 6, 2), n_levels=2, seed=0)
    # dense matrix of the map: columns = images of the unit parameter vectors
    sizes = [int(np.prod(v.shape)) for v in p.variables]
    columns = []
    for i in range(sum(sizes)):
        flat = np.zeros(sum(sizes), np.float32)
        flat[i] = 1
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        columns.append(p([part.reshape(v.shape) for part, v in zip(parts, p.variables)]).numpy().ravel())
    matrix = np.stack(columns, 1).astype(np.float64)
    x = np.random.default_rng(0).normal(size=p.shape)
    expected = np.linalg.pinv(matrix) @ x.ravel()
    ours = np.concatenate([z.ravel() for z in p.params_from_image(x)])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    rgb = param.to_valid_rgb(param.laplacian_pyramid_image((2, 16, 16, 3), seed=0), decorrelate=True)
    images = rgb(random_params(rgb, scale=1.0)).numpy()
    np.testing.assert_allclose(rgb(rgb.params_from_image(images)).numpy(), images, atol=1e-5)


def test_laplacian_pyramid_errors():
    with pytest.raises(ValueError, match="n_levels >= 1, got 0"):
        param.laplacian_pyramid_image((1, 8, 8, 3), n_levels=0)
    with pytest.raises(ValueError, match="4 levels needs images of at least 8 pixels a side, got 4x16"):
        param.laplacian_pyramid_image((1, 4, 16, 3), n_levels=4)


# -- grayscale_image_rgb, image(alpha=True) ------------------------------------------------
def test_grayscale_image_rgb_parity(lucid):
    ours = param.grayscale_image_rgb(8, batch=2, seed=0)
    assert ours.shape == (2, 8, 8, 3) and ours.variables[0].shape[2] == 1
    (z,) = random_params(ours, scale=0.3)
    expected = lucid_eval(lambda: lucid.images.grayscale_image_rgb(8, batch=2), [np.moveaxis(z, 0, 1)])
    np.testing.assert_allclose(ours([z]).numpy(), expected, rtol=1e-5, atol=1e-6)
    images = ours([z]).numpy()
    np.testing.assert_allclose(ours(ours.params_from_image(images)).numpy(), images, atol=1e-5)


@pytest.mark.parametrize("decorrelate,fft", [(True, True), (False, True), (True, False)])
def test_image_alpha_parity(lucid, decorrelate, fft):
    ours = param.image(8, h=6, batch=2, alpha=True, decorrelate=decorrelate, fft=fft, seed=0)
    assert ours.shape == (2, 6, 8, 4)
    (z,) = random_params(ours, scale=0.3)
    lucid_z = np.moveaxis(z, 0, 1) if fft else z
    expected = lucid_eval(lambda: lucid.images.image(8, h=6, batch=2, alpha=True, decorrelate=decorrelate, fft=fft),
                          [lucid_z])
    np.testing.assert_allclose(ours([z]).numpy(), expected, rtol=1e-5, atol=1e-6)
    images = ours([z]).numpy()
    np.testing.assert_allclose(ours(ours.params_from_image(images)).numpy(), images, atol=1e-5)
    assert param.image(8, alpha=True, channels=2, seed=0).shape == (1, 8, 8, 2)  # Lucid: channels win


# -- image_sample ---------------------------------------------------------------------------
def test_image_sample_parity(lucid, monkeypatch):
    """With the random draws replaced by fixed spectra, Lucid's graph and ours agree."""
    shape, sd = (3, 8, 7, 3), 0.5
    fh, fw = param.rfft2d_freqs(8, 7).shape
    spectra = np.random.default_rng(0).normal(size=(3, 2, 3, fh, fw)).astype(np.float32)
    ours = param.image_sample(shape, sd=sd)
    monkeypatch.setattr(tf.random, "normal", lambda shape, stddev: stddev * tf.constant(spectra))
    got = ours().numpy()
    draws = iter(spectra)
    monkeypatch.setattr(tf, "random_normal", lambda shape, dtype: tf.constant(next(draws)), raising=False)
    expected = lucid_eval(lambda: lucid.random.image_sample(list(shape), sd=sd))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_rand_fft_image_parity(lucid, monkeypatch):
    """Lucid's unbounded ``rand_fft_image`` (before `to_valid_rgb`), same fixed spectra."""
    shape, sd = (2, 6, 9, 4), 0.3
    fh, fw = param.rfft2d_freqs(6, 9).shape
    spectra = np.random.default_rng(1).normal(size=(2, 2, 4, fh, fw)).astype(np.float32)
    ours = param.random.rand_fft_image(shape, sd=sd, decay_power=1.5)
    assert ours.variables == [] and ours.shape == shape
    monkeypatch.setattr(tf.random, "normal", lambda shape, stddev: stddev * tf.constant(spectra))
    got = ours().numpy()
    draws = iter(spectra)
    monkeypatch.setattr(tf, "random_normal", lambda shape, dtype: tf.constant(next(draws)), raising=False)
    expected = lucid_eval(lambda: lucid.random.rand_fft_image(list(shape), sd=sd, decay_power=1.5))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_image_sample_draws_every_call():
    p = param.image_sample((2, 8, 8, 3), sd=0.5)
    assert p.variables == [] and p.per_sample and p.structure_key() is not None
    first, second = p().numpy(), p().numpy()
    assert first.shape == (2, 8, 8, 3) and 0 <= first.min() and first.max() <= 1
    assert np.abs(first - second).max() > 1e-3
    compiled = tf.function(lambda: p())
    assert np.abs(compiled().numpy() - compiled().numpy()).max() > 1e-3
    with pytest.raises(NotImplementedError, match="new random image at every call"):
        p.params_from_image(first)


# -- cppn -------------------------------------------------------------------------------------
def _numpy_cppn(p, params, activation, normalize):
    """Lucid's cppn graph in NumPy, for the given variable values."""
    params = [np.asarray(v, np.float64) for v in params]
    net = p.coords.astype(np.float64)
    n_hidden = len(p.layers) - 1
    for i in range(n_hidden + 1):
        kernel, bias = params[:2]
        params = params[2:]
        net = net @ kernel[0, 0] + bias
        if i == n_hidden:
            return 1 / (1 + np.exp(-net))
        if normalize:
            gamma, beta = params[:2]
            params = params[2:]
            mean, var = net.mean((1, 2), keepdims=True), net.var((1, 2), keepdims=True)
            net = (net - mean) / np.sqrt(var + 1e-6) * gamma + beta
        net = activation(net)


@pytest.mark.parametrize("normalize", [False, True])
def test_cppn(normalize):
    p = param.cppn(12, batch=2, num_hidden_channels=5, num_layers=3, normalize=normalize, seed=0)
    assert p.shape == (2, 12, 12, 3) and not p.per_sample
    assert len(p.variables) == 3 * (2 + 2 * normalize) + 2
    assert all(isinstance(v, tf.Variable) and v.trainable for v in p.variables)
    assert tuple(p.variables[0].shape) == (1, 1, 2, 5) and tuple(p.variables[-2].shape) == (1, 1, 10, 3)
    first = p().numpy()
    np.testing.assert_allclose(first, first[:1, :1, :1] + 0 * first)  # zero output kernel: sigmoid(bias)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(p()[..., 0])
    grads = tape.gradient(loss, p.variables)
    assert np.abs(grads[-2].numpy()).max() > 0 and np.abs(grads[-1].numpy()).max() > 0
    z = random_params(p, seed=1)
    images = p(z).numpy()
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0.05
    np.testing.assert_allclose(images[0], images[1], atol=1e-6)  # one network for the whole batch
    composite = lambda x: np.concatenate([np.arctan(x) / 0.67, np.arctan(x) ** 2 / 0.6], -1)
    np.testing.assert_allclose(images, _numpy_cppn(p, z, composite, normalize), rtol=1e-4, atol=1e-5)
    params = [tf.constant(v) for v in z]
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = tf.reduce_sum(p(params) * np.random.default_rng(0).normal(size=p.shape))
    assert all(np.abs(g.numpy()).max() > 0 for g in tape.gradient(loss, params))
    with pytest.raises(NotImplementedError, match="cppn has no inverse"):
        p.params_from_image(images)


def test_cppn_options():
    a, b = param.cppn(8, num_layers=2, seed=3), param.cppn(8, num_layers=2, seed=3)
    for u, v in zip(a.variables, b.variables):
        np.testing.assert_array_equal(u.numpy(), v.numpy())
    from lucid_ifv.param.cppn import relu_normalized_activation

    relu = param.cppn(8, num_layers=2, num_hidden_channels=4, num_output_channels=1,
                      activation_func=relu_normalized_activation, seed=0)
    assert relu.shape == (1, 8, 8, 1) and tuple(relu.variables[2].shape) == (1, 1, 4, 4)
    with pytest.raises(ValueError, match="positive integer width, got 0"):
        param.cppn(0)


def test_lucid_names_exported():
    for name in ("naive", "laplacian_pyramid", "grayscale_image_rgb", "image_sample", "cppn", "lowres_tensor",
                 "fft_image", "to_valid_rgb", "image"):
        assert callable(getattr(param, name)), name
    assert param.spatial.naive is param.naive and param.random.image_sample is param.image_sample
