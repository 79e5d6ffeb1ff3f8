"""Geometry images (modelzoo.geometry) against analytic spheres, plus seeding and validation."""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo import geometry as geo

SIZE = 32
H = 2.0 / (SIZE - 1)  # voxel spacing of a 32^3 volume on [-1, 1]^3


def pixel_centres(resolution):
    """x [W], y [H] of the pixel centres (the module's camera convention)."""
    xs = -1.0 + (2.0 * np.arange(resolution) + 1.0) / resolution
    ys = 1.0 - (2.0 * np.arange(resolution) + 1.0) / resolution
    return np.meshgrid(xs, ys)


def hit_points(depth, resolution):
    """View-space hit points [H, W, 3] from the depth map (z = 1 - 2 depth)."""
    x, y = pixel_centres(resolution)
    return np.stack([x, y, 1.0 - 2.0 * depth], axis=-1)


def angle_deg(a, b):
    cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# Trilinear interpolation of the sphere's distance field r - |p - c| underestimates it (|p - c|
# is convex) by at most sum_a h^2/8 |d_aa |p - c|| <= 3 h^2 / (8 rho) near the surface
# (rho >= r - h), so the rendered surface is a sphere shrunk by at most this much:
R = 0.5
RADIAL_TOL = 3 * H**2 / (8 * (R - H)) + 1e-4  # ~0.0036, a sixteenth of a voxel


@pytest.fixture(scope="module")
def sphere():
    centre = np.array([0.1, -0.2, 0.05])
    volume = geo.sphere_volume(SIZE, centre, R)
    return centre, volume, geo.raycast(volume, 0.0, 64)


def test_sphere_mask_is_the_disc(sphere):
    centre, _, (_, _, mask) = sphere
    x, y = pixel_centres(64)
    rho = np.hypot(x - centre[0], y - centre[1])
    # Inside the shrunk disc every ray hits: the chord through the shrunk sphere is longer than
    # a marching step (half a voxel) once rho < sqrt((R - tol)^2 - (h/4)^2); outside R none does.
    surely_in = rho < np.sqrt((R - RADIAL_TOL) ** 2 - (H / 4) ** 2)
    assert mask[surely_in].min() == 1
    assert mask[rho > R].max() == 0
    # pixel count: pi (R / pixel)^2 = 804.2 px; the band between R - tol and R holds ~18 px
    expected = np.pi * (R * 32) ** 2
    assert abs(mask.sum() - expected) <= 2 * np.pi * R * 32 * RADIAL_TOL * 32 + 3


def test_sphere_depth_and_hit_points_are_on_the_sphere(sphere):
    centre, _, (_, depth, mask) = sphere
    hits = mask > 0
    points = hit_points(depth, 64)
    radius = np.linalg.norm(points - centre, axis=-1)
    np.testing.assert_array_less(np.abs(radius[hits] - R), RADIAL_TOL)
    # depth vs the analytic front intersection z = c_z + sqrt(R^2 - rho^2), away from the
    # silhouette (rho <= 0.9 R), where a radial error maps to a z error of at most tol / cos
    x, y = pixel_centres(64)
    rho = np.hypot(x - centre[0], y - centre[1])
    inner = rho <= 0.9 * R
    z_true = centre[2] + np.sqrt(R**2 - rho[inner] ** 2)
    cos_min = np.sqrt(1 - 0.9**2)
    np.testing.assert_allclose(depth[inner], (1 - z_true) / 2, atol=RADIAL_TOL / cos_min / 2)
    assert np.all(depth[~hits] == geo.NO_HIT_DEPTH)


def test_sphere_normals_point_away_from_the_centre(sphere):
    centre, _, (normals, depth, mask) = sphere
    hits = mask > 0
    analytic = hit_points(depth, 64) - centre  # (p - c) / r up to scale
    errors = angle_deg(normals[hits], analytic[hits])
    x, y = pixel_centres(64)
    inner = (np.hypot(x - centre[0], y - centre[1]) <= 0.9 * R)[hits]
    assert errors[inner].max() < 1.5  # measured ~0.5 deg
    assert errors.max() < 6.0  # grazing silhouette pixels (measured ~4.4 deg)
    np.testing.assert_allclose(np.linalg.norm(normals[hits], axis=-1), 1.0, atol=1e-5)
    assert normals[..., 2].min() >= 0
    assert np.all(normals[~hits] == 0)


def test_gaussian_blob_sphere():
    """A single Gaussian blob a exp(-|p-c|^2 / 2s^2) at iso: a sphere of radius s sqrt(2 ln(a/iso))."""
    g = geo.grid_coordinates(SIZE)
    centre, s = np.array([-0.1, 0.15, 0.0]), 0.25
    d2 = (g[:, None, None] - centre[0]) ** 2 + (g[None, :, None] - centre[1]) ** 2 + (g[None, None, :] - centre[2]) ** 2
    volume = np.exp(-d2 / (2 * s * s)).astype(np.float32)
    radius = s * np.sqrt(2 * np.log(2.0))  # iso 0.5: 0.294
    normals, depth, mask = geo.raycast(volume, 0.5, 64)
    expected = np.pi * (radius * 32) ** 2  # 278 px
    assert abs(mask.sum() - expected) / expected < 0.03
    hits = mask > 0
    points = hit_points(depth, 64)
    assert np.abs(np.linalg.norm(points - centre, axis=-1)[hits] - radius).max() < 0.1 * H
    assert angle_deg(normals[hits], (points - centre)[hits]).max() < 6.0
    assert normals[..., 2].min() >= 0


def test_rotated_view_moves_the_sphere():
    centre = np.array([0.3, 0.0, -0.1])
    volume = geo.sphere_volume(SIZE, centre, 0.35)
    rot = geo.random_rotation(7)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) > 0
    normals, depth, mask = geo.raycast(volume, 0.0, 64, view=rot)
    seen = rot @ centre  # where the view puts the centre
    x, y = pixel_centres(64)
    rho = np.hypot(x - seen[0], y - seen[1])
    assert mask[rho < 0.33].min() == 1 and mask[rho > 0.35].max() == 0
    points = hit_points(depth, 64)
    hits = mask > 0
    assert np.abs(np.linalg.norm(points - seen, axis=-1)[hits] - 0.35).max() < 2 * RADIAL_TOL
    assert angle_deg(normals[hits], (points - seen)[hits])[(rho < 0.3)[hits]].max() < 2.0
    # the identity rotation is the default view, through the same code path
    same = geo.raycast(volume, 0.0, 32, view=np.eye(3))
    default = geo.raycast(volume, 0.0, 32)
    for a, b in zip(same, default):
        np.testing.assert_array_equal(a, b)


def test_near_plane_cut_hits_at_depth_zero():
    volume = geo.sphere_volume(SIZE, (0.0, 0.0, 0.9), 0.4)  # pokes out of the cube's z = +1 face
    normals, depth, mask = geo.raycast(volume, 0.0, 16)
    centre_pixels = (slice(7, 9), slice(7, 9))
    assert np.all(mask[centre_pixels] == 1) and np.all(depth[centre_pixels] == 0)
    assert normals[..., 2].min() >= 0


def test_shapes_dtypes_and_ranges():
    volume = geo.blob_volume(3)
    assert volume.shape == (32, 32, 32) and volume.dtype == np.float32
    normals, depth, mask = geo.raycast(volume, 0.5, (12, 20))
    assert normals.shape == (12, 20, 3) and depth.shape == (12, 20) and mask.shape == (12, 20)
    assert normals.dtype == depth.dtype == mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0} and 0 <= depth.min() and depth.max() <= 1
    image = geo.geometry_image(normals, depth, mask)
    assert image.shape == (12, 20, 5) and image.dtype == np.float32
    back = geo.split_geometry_image(image)
    for a, b in zip(back, (normals, depth, mask)):
        np.testing.assert_array_equal(a, b)
    batch = geo.raycast_batch(np.stack([volume, geo.blob_volume(4)]), 0.5, (12, 20))
    for a, b in zip(batch, (normals, depth, mask)):
        np.testing.assert_array_equal(a[0], b)


def test_blob_volume_is_seeded():
    np.testing.assert_array_equal(geo.blob_volume(5), geo.blob_volume(5))
    np.testing.assert_array_equal(geo.blob_volume(np.random.default_rng(5)), geo.blob_volume(5))
    assert not np.allclose(geo.blob_volume(5), geo.blob_volume(6))
    assert geo.blob_volume(5, size=16, n_blobs=(1, 1)).shape == (16, 16, 16)


def test_srnet_pairs_shapes_seeding_and_same_view():
    low, high = geo.srnet_pairs(6, seed=1)
    assert low.shape == (6, 16, 16, 5) and high.shape == (6, 64, 64, 5)
    assert low.dtype == high.dtype == np.float32
    again = geo.srnet_pairs(6, seed=1)
    np.testing.assert_array_equal(low, again[0])
    np.testing.assert_array_equal(high, again[1])
    prefix = geo.srnet_pairs(2, seed=1)  # pair i does not depend on n
    np.testing.assert_array_equal(prefix[1], high[:2])
    assert not np.allclose(geo.srnet_pairs(2, seed=2)[1], high[:2])
    # both resolutions render the same volume: the high-res mask averaged over 4x4 blocks
    # agrees with the low-res mask almost everywhere (they differ only along silhouettes)
    blocks = high[..., 4].reshape(6, 16, 4, 16, 4).mean(axis=(2, 4))
    assert np.mean((blocks > 0.5) == (low[..., 4] > 0.5)) > 0.95
    # and with rotate=True the same rotated view: pair 0 rebuilt from its documented seed
    low_r, high_r = geo.srnet_pairs(1, seed=3, rotate=True)
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(1)[0])
    volume, view = geo.blob_volume(rng), geo.random_rotation(rng)
    np.testing.assert_array_equal(low_r[0], geo.render(volume, geo.PAIRS_ISO, 16, view))
    np.testing.assert_array_equal(high_r[0], geo.render(volume, geo.PAIRS_ISO, 64, view))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda v: geo.raycast(v[:, :, :20], 0.5, 16), r"cubic .*\(32, 32, 20\)"),
        (lambda v: geo.raycast(v[0], 0.5, 16), r"cubic .*\(32, 32\)"),
        (lambda v: geo.raycast(v, 0.5, 0), r"resolution .*>= 1.*0"),
        (lambda v: geo.raycast(v, 0.5, (16, -2)), r"resolution .*-2"),
        (lambda v: geo.raycast(v, 7.5, 16), r"iso=7\.5 is outside .*volume\.max\(\)"),
        (lambda v: geo.raycast(v, float(v.min()), 16), r"iso=.* is outside"),
        (lambda v: geo.raycast(v, np.nan, 16), r"iso"),
        (lambda v: geo.raycast(v, 0.5, 16, view=2 * np.eye(3)), r"rotation"),
        (lambda v: geo.raycast(np.where(v > 0.9, np.nan, v), 0.5, 16), r"finite"),
        (lambda v: geo.raycast(v, 0.5, 16, step=0), r"step"),
        (lambda v: geo.geometry_image(np.zeros((4, 4, 3)), np.zeros((4, 5)), np.zeros((4, 4))), r"shapes"),
        (lambda v: geo.split_geometry_image(np.zeros((4, 4, 3))), r"\[\.\.\., H, W, 5\]"),
        (lambda v: geo.blob_volume(0, n_blobs=(3, 2)), r"n_blobs"),
    ],
)
def test_bad_inputs_raise_value_error(call, match):
    volume = geo.blob_volume(0)
    with pytest.raises(ValueError, match=match):
        call(volume)
