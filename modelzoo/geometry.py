"""Geometry images of isosurfaces in scalar volumes: the data of the paper's SRNet (Sec. 3.7).

Weiss et al. (2019) train an SRNet to upscale low-resolution *geometry images* of an
isosurface: per pixel a view-space normal, a depth and a hit mask. This module makes such
data from random volumes, with plain vectorized numpy (no per-pixel Python loop):

* `blob_volume`: a seeded scalar volume ``[D, D, D]``, a sum of Gaussian blobs
  (`sphere_volume`: an analytic sphere's distance field, for tests);
* `raycast`: an orthographic isosurface ray caster (ray marching with a fixed step, then
  bisection of the crossing on the trilinear field; normals from central differences);
  `raycast_batch` casts many volumes at once; `render` returns the geometry image;
* `geometry_image` / `split_geometry_image`: ``(normals, depth, mask)`` <-> ``[H, W, 5]``;
* `srnet_pairs`: seeded (low-res, high-res) geometry images of the same volume and view.
  The camera is fixed (looking along ``-z``) by default: the blob volumes' distribution is
  rotation invariant already, so random views (``rotate=True``, `random_rotation`) add no
  variety; they are there for other volumes.

Speed: a 64x64 and a 16x16 image of a 32^3 blob volume take ~5-10 ms together (empty
space is skipped per ray), so `srnet_pairs` makes 4000 pairs in ~30 s on one core.

Conventions (all of them used by `raycast`):

World space.
  The volume fills the cube ``[-1, 1]^3``: sample ``volume[i, j, k]`` sits at
  ``(x, y, z) = (g(i), g(j), g(k))`` with ``g(i) = -1 + 2 i / (D - 1)`` (the first and last
  samples lie on the cube's faces). Between samples the field is the trilinear
  interpolation of the volume; outside the cube it is ``volume.min()`` (so the outside
  never counts as "inside" the isosurface).
Inside / outside.
  The *inside* of the isosurface is where the field is ``>= iso`` (a blob's centre), the
  outside where it is ``< iso``. A ray hits the surface where it first enters the inside.
View.
  ``view`` is a rotation ``R`` (``[3, 3]``, orthonormal, det +1) applied to the volume:
  the view-space point ``p`` shows the volume at ``R.T @ p``. ``view=None`` is the
  identity. `random_rotation` draws a seeded uniform rotation for data augmentation.
Camera.
  Orthographic, looking along ``-z`` in view space, the image covering ``[-1, 1]^2``:
  pixel ``(row r, column c)`` of an ``H x W`` image is the ray through
  ``x = -1 + (2c + 1) / W``, ``y = 1 - (2r + 1) / H`` (row 0 at the top, i.e. ``+y``;
  pixel centres, so resolutions nest like half-pixel-centred bilinear resizing), starting
  at the near plane ``z = +1`` and ending at the far plane ``z = -1``.
Depth.
  ``depth = (1 - z_hit) / 2`` in [0, 1]: 0 on the near plane, 1 on the far plane. Pixels
  without a hit have ``depth = 1`` (`NO_HIT_DEPTH`, "at the far plane").
Normals.
  Unit vectors in view space pointing *outward*, i.e. towards decreasing field
  (``n = -grad f / |grad f|``; for a blob, away from its centre). The gradient is taken by
  central differences of the trilinear field along the view axes with a step of half a
  voxel. Visible surfaces face the camera, so ``n_z >= 0``; the few hits where the
  finite-difference normal tilts slightly away (silhouettes) get ``n_z`` clamped to 0 and
  are renormalized. Pixels without a hit have ``n = (0, 0, 0)``.
Mask.
  1 where the ray hits the surface, 0 elsewhere.

Geometry images are ``[..., H, W, 5]`` float32 with channels ``(n_x, n_y, n_z, depth,
mask)`` (`CHANNELS`): normals in [-1, 1] (``n_z`` in [0, 1]), depth and mask in [0, 1].
"""

from __future__ import annotations

import numpy as np

#: Channel order of a geometry image.
CHANNELS = ("normal_x", "normal_y", "normal_z", "depth", "mask")
#: Depth of pixels without a surface hit (the far plane).
NO_HIT_DEPTH = 1.0
#: Defaults of `srnet_pairs` (also the shipped SRNet's training data).
PAIRS_VOLUME_SIZE = 32
PAIRS_ISO = 0.5
_PAIRS_BATCH = 64


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


# -- volumes ---------------------------------------------------------------------------------


def grid_coordinates(size: int) -> np.ndarray:
    """World coordinates ``g(i) = -1 + 2 i / (size - 1)`` of the samples along one axis; ``[size]``."""
    return np.linspace(-1.0, 1.0, int(size))


def blob_volume(rng_or_seed=None, size: int = 32, n_blobs: tuple[int, int] = (2, 6), *,
                centre_radius: float = 0.6, sigma: tuple[float, float] = (0.1, 0.25),
                amplitude: tuple[float, float] = (0.7, 1.3)) -> np.ndarray:
    """A random scalar volume: a sum of isotropic Gaussian blobs.

    ``f(p) = sum_b a_b exp(-|p - c_b|^2 / (2 s_b^2))`` sampled at the grid of
    `grid_coordinates` (``volume[i, j, k] = f(g(i), g(j), g(k))``). The blob count is
    uniform in ``[n_blobs[0], n_blobs[1]]``; the centres ``c_b`` uniform in the ball of
    radius `centre_radius`; widths ``s_b`` uniform in `sigma` and amplitudes ``a_b``
    uniform in `amplitude` (world units, the cube being ``[-1, 1]^3``). With the defaults
    every blob alone already crosses ``iso = 0.5`` (its isosurface is a sphere of radius
    ``s sqrt(2 ln(a / 0.5))``, 0.06 to 0.35, centred at most 0.6 from the origin), so the
    surface stays inside the unit ball (up to where overlapping blobs merge) and rotated
    views of the volume keep it in view.

    Args:
      rng_or_seed: a `numpy.random.Generator` or a seed (same seed -> same volume).
      size: samples per axis ``D`` (>= 2).
      n_blobs: inclusive range of the blob count (``1 <= lo <= hi``).
    Returns:
      float32 ``[D, D, D]``.
    """
    size = int(size)
    if size < 2:
        raise ValueError(f"size must be >= 2 samples per axis, got {size}")
    lo, hi = (int(v) for v in n_blobs)
    if not 1 <= lo <= hi:
        raise ValueError(f"n_blobs must be an inclusive range (lo, hi) with 1 <= lo <= hi, got {n_blobs!r}")
    rng = _rng(rng_or_seed)
    count = int(rng.integers(lo, hi + 1))
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres = directions * (centre_radius * rng.uniform(size=(count, 1)) ** (1 / 3))
    widths = rng.uniform(*sigma, size=count)
    amplitudes = rng.uniform(*amplitude, size=count)
    g = grid_coordinates(size)
    volume = np.zeros((size, size, size))
    for c, s, a in zip(centres, widths, amplitudes):  # a handful of blobs; each is one vectorized pass
        gx = np.exp(-((g - c[0]) ** 2) / (2 * s * s))
        gy = np.exp(-((g - c[1]) ** 2) / (2 * s * s))
        gz = np.exp(-((g - c[2]) ** 2) / (2 * s * s))
        volume += a * gx[:, None, None] * gy[None, :, None] * gz[None, None, :]
    return volume.astype(np.float32)


def sphere_volume(size: int = 32, centre=(0.0, 0.0, 0.0), radius: float = 0.5) -> np.ndarray:
    """The signed distance field ``radius - |p - centre|`` (positive inside) of a sphere,
    sampled like `blob_volume`; float32 ``[D, D, D]``. Its ``iso = 0`` surface is the sphere."""
    g = grid_coordinates(size)
    c = np.asarray(centre, dtype=np.float64)
    d2 = (g[:, None, None] - c[0]) ** 2 + (g[None, :, None] - c[1]) ** 2 + (g[None, None, :] - c[2]) ** 2
    return (radius - np.sqrt(d2)).astype(np.float32)


def random_rotation(rng_or_seed=None) -> np.ndarray:
    """A rotation matrix ``[3, 3]`` drawn uniformly from SO(3) (QR of a Gaussian matrix,
    sign-corrected); seeded. Pass it as ``raycast(..., view=R)`` to look at a rotated volume."""
    rng = _rng(rng_or_seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


# -- ray casting -------------------------------------------------------------------------------


def _trilinear(flat: np.ndarray, size: int, q: np.ndarray, vol: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The trilinear field of volume ``vol`` (per point, ``[...]`` ints) at world points `q`
    ``[..., 3]`` (volume space); ``fill[vol]`` outside the cube. `flat` holds the C-ordered
    volumes one after the other, ``[B*D*D*D]``."""
    u = (q + 1.0) * (0.5 * (size - 1))
    outside = np.any((u < 0) | (u > size - 1), axis=-1)
    i0 = np.clip(np.floor(u), 0, size - 2).astype(np.intp)
    f = u - i0
    base = ((vol * size + i0[..., 0]) * size + i0[..., 1]) * size + i0[..., 2]
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    dy, dx = size, size * size
    c00 = flat[base] * (1 - fz) + flat[base + 1] * fz
    c01 = flat[base + dy] * (1 - fz) + flat[base + dy + 1] * fz
    c10 = flat[base + dx] * (1 - fz) + flat[base + dx + 1] * fz
    c11 = flat[base + dx + dy] * (1 - fz) + flat[base + dx + dy + 1] * fz
    c0 = c00 * (1 - fy) + c01 * fy
    c1 = c10 * (1 - fy) + c11 * fy
    value = c0 * (1 - fx) + c1 * fx
    return np.where(outside, fill[vol], value)


#: Marching steps evaluated per ray and round (rays that hit retire between rounds).
_CHUNK = 8


def _ray_bounds(inside: np.ndarray, rots: np.ndarray | None, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Conservative ray intervals for volumes ``inside [B, D, D, D]`` (``field >= iso``).

    For each pixel of each volume (``[B*H*W]``, row-major) the smallest and largest ray
    parameter ``t`` (``z = 1 - t``, clipped to [0, 2]) at which the ray is inside the
    view-space bounding box of a cell with a corner ``>= iso``; elsewhere on the ray the
    trilinear field is below iso. Pixels meeting no such cell get ``(inf, -inf)``.
    `rots` ``[B, 3, 3]`` (None: identity)."""
    batch, size = inside.shape[0], inside.shape[1]
    voxel = 2.0 / (size - 1)
    n = size - 1
    cells = np.zeros((batch, n, n, n), bool)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                cells |= inside[:, a:n + a, b:n + b, c:n + c]
    idx = np.argwhere(cells)  # [N, 4]: volume, i, j, k
    t_start = np.full(batch * height * width, np.inf)
    t_end = np.full(batch * height * width, -np.inf)
    if idx.size == 0:
        return t_start, t_end
    vol = idx[:, 0]
    centres = -1.0 + (idx[:, 1:] + 0.5) * voxel
    if rots is None:
        half = np.full((len(idx), 3), 0.5 * voxel + 1e-9)
    else:  # view space: p = R q; half extent of the rotated cell's box |R| (voxel / 2)
        centres = np.einsum("nab,nb->na", rots[vol], centres)
        half = np.abs(rots[vol]).sum(axis=2) * (0.5 * voxel) + 1e-9
    # pixel centres x_c = -1 + (2c + 1) / W inside [lo, hi]  <=>  c in [ceil(.), floor(.)]
    c_lo = np.ceil((centres[:, 0] - half[:, 0] + 1.0) * width / 2 - 0.5).astype(np.intp)
    c_hi = np.floor((centres[:, 0] + half[:, 0] + 1.0) * width / 2 - 0.5).astype(np.intp)
    r_lo = np.ceil((1.0 - centres[:, 1] - half[:, 1]) * height / 2 - 0.5).astype(np.intp)
    r_hi = np.floor((1.0 - centres[:, 1] + half[:, 1]) * height / 2 - 0.5).astype(np.intp)
    near = np.clip(1.0 - (centres[:, 2] + half[:, 2]), 0.0, 2.0)
    far = np.clip(1.0 - (centres[:, 2] - half[:, 2]), 0.0, 2.0)
    span_c = max(int(np.max(c_hi - c_lo)) + 1, 0)
    span_r = max(int(np.max(r_hi - r_lo)) + 1, 0)
    dc, dr = np.meshgrid(np.arange(span_c), np.arange(span_r))
    cc = c_lo[:, None] + dc.ravel()[None, :]  # [N, K]
    rr = r_lo[:, None] + dr.ravel()[None, :]
    ok = (cc <= c_hi[:, None]) & (rr <= r_hi[:, None]) & (cc >= 0) & (cc < width) & (rr >= 0) & (rr < height)
    pixel = ((vol[:, None] * height + rr) * width + cc)[ok]
    np.minimum.at(t_start, pixel, np.broadcast_to(near[:, None], ok.shape)[ok])
    np.maximum.at(t_end, pixel, np.broadcast_to(far[:, None], ok.shape)[ok])
    return t_start, t_end


def _check_volumes(volumes, batched: bool) -> np.ndarray:
    volumes = np.asarray(volumes)
    what, ndim = ("volumes", 4) if batched else ("volume", 3)
    shape = f"[{'B, ' if batched else ''}D, D, D]"
    if volumes.ndim != ndim or len(set(volumes.shape[-3:])) != 1:
        raise ValueError(f"{what} must be a cubic {shape} array, got shape {volumes.shape}")
    if volumes.shape[-1] < 2:
        raise ValueError(f"{what} must have at least 2 samples per axis (D >= 2), got shape {volumes.shape}")
    if not np.issubdtype(volumes.dtype, np.number) or not np.all(np.isfinite(volumes)):
        raise ValueError(f"{what} must hold finite numbers")
    return volumes.astype(np.float64)


def _check_resolution(resolution) -> tuple[int, int]:
    pair = (resolution, resolution) if np.ndim(resolution) == 0 else tuple(resolution)
    if len(pair) != 2:
        raise ValueError(f"resolution must be an int or (height, width), got {resolution!r}")
    out = []
    for v in pair:
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer() or int(v) < 1:
            raise ValueError(f"resolution must be positive integers (>= 1), got {resolution!r}")
        out.append(int(v))
    return out[0], out[1]


def _check_views(views, batch: int) -> np.ndarray | None:
    """None, one rotation [3, 3] or one per volume [B, 3, 3] -> None or [B, 3, 3]."""
    if views is None:
        return None
    rots = np.asarray(views, dtype=np.float64)
    if rots.shape == (3, 3):
        rots = np.broadcast_to(rots, (batch, 3, 3))
    if rots.shape != (batch, 3, 3) or not np.all(np.isfinite(rots)):
        raise ValueError(f"view must be None or a 3x3 rotation matrix (or one per volume, [{batch}, 3, 3]), "
                         f"got shape {rots.shape}")
    eye = np.einsum("nab,ncb->nac", rots, rots)
    bad = ~np.all(np.isclose(eye, np.eye(3), atol=1e-6), axis=(1, 2)) | (np.linalg.det(rots) < 0)
    if bad.any():
        raise ValueError(f"view must be a rotation matrix (orthonormal, det +1), got {rots[np.argmax(bad)].tolist()}")
    return np.ascontiguousarray(rots)


def raycast_batch(volumes, iso, resolution, views=None, *, step: float = 0.5,
                  refine: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`raycast` for a batch of volumes at once (same algorithm, same results).

    Args:
      volumes: ``[B, D, D, D]``.
      iso: one isovalue or one per volume ``[B]``; each strictly inside its volume's range.
      resolution, step, refine: as in `raycast`.
      views: None, one rotation ``[3, 3]`` or one per volume ``[B, 3, 3]``.
    Returns:
      normals ``[B, H, W, 3]``, depth ``[B, H, W]``, mask ``[B, H, W]`` (float32).
    """
    vols = _check_volumes(volumes, batched=True)
    height, width = _check_resolution(resolution)
    batch, size = vols.shape[0], vols.shape[1]
    rots = _check_views(views, batch)
    isos = np.broadcast_to(np.asarray(iso, dtype=np.float64), (batch,)) if np.ndim(iso) <= 1 else None
    if isos is None or not np.all(np.isfinite(isos)):
        raise ValueError(f"iso must be a finite number or one per volume, got {iso!r}")
    vmin = vols.reshape(batch, -1).min(axis=1)
    vmax = vols.reshape(batch, -1).max(axis=1)
    bad = ~((vmin < isos) & (isos < vmax))
    if bad.any():
        b = int(np.argmax(bad))
        where = "" if batch == 1 else f" of volume {b}"
        raise ValueError(
            f"iso={float(isos[b])!r} is outside the value range{where}: it must lie strictly between "
            f"volume.min()={vmin[b]:.6g} and volume.max()={vmax[b]:.6g}"
        )
    if not step > 0:
        raise ValueError(f"step must be > 0 voxels, got {step!r}")
    if int(refine) < 0:
        raise ValueError(f"refine must be >= 0, got {refine!r}")
    voxel = 2.0 / (size - 1)
    flat = np.ascontiguousarray(vols).ravel()

    normals = np.zeros((batch * height * width, 3), np.float32)
    depth = np.full(batch * height * width, NO_HIT_DEPTH, np.float32)
    mask = np.zeros(batch * height * width, np.float32)

    def result():
        return (normals.reshape(batch, height, width, 3), depth.reshape(batch, height, width),
                mask.reshape(batch, height, width))

    t_start, t_end = _ray_bounds(vols >= isos[:, None, None, None], rots, height, width)
    rays = np.flatnonzero(t_start <= t_end)  # global pixel index b*H*W + r*W + c
    if rays.size == 0:
        return result()
    vol, rest = np.divmod(rays, height * width)
    rows, cols = np.divmod(rest, width)
    px = -1.0 + (2.0 * cols + 1.0) / width
    py = 1.0 - (2.0 * rows + 1.0) / height
    t_start, t_end, ray_iso = t_start[rays], t_end[rays], isos[vol]

    def field(x, y, t, v):
        """The field of volume v at view-space points p = (x, y, 1 - t), broadcast; [...].
        The volume point is R.T p (R = rots[v])."""
        x, y, t, v = np.broadcast_arrays(x, y, 1.0 - t, v)
        p = np.stack([x, y, t], axis=-1)
        if rots is not None:
            p = np.einsum("...ba,...b->...a", rots[v], p)
        return _trilinear(flat, size, p, v, vmin)

    # March all live rays _CHUNK steps at a time from their own start; retire them on a hit
    # or past their end. t is the ray parameter: z = 1 - t, depth = t / 2.
    dt = float(step) * voxel
    t_lo = np.full(rays.size, np.nan)
    t_hi = np.full(rays.size, np.nan)
    live = np.arange(rays.size)
    k = 0
    while live.size:
        ts = np.minimum(t_start[live, None] + dt * np.arange(k, k + _CHUNK), t_end[live, None])  # [L, C]
        above = field(px[live, None], py[live, None], ts, vol[live, None]) >= ray_iso[live, None]
        hit = above.any(axis=1)
        j = np.argmax(above, axis=1)[hit]
        rh = live[hit]
        t_hi[rh] = ts[hit, j]
        # the sample before (below iso); a ray whose very first sample is inside starts on the
        # surface (cut by the near plane)
        prev = np.where(j > 0, ts[hit, np.maximum(j - 1, 0)], t_start[rh] + dt * (k - 1))
        t_lo[rh] = np.where((k == 0) & (j == 0), t_hi[rh], prev)
        live = live[~hit & (ts[:, -1] < t_end[live])]
        k += _CHUNK
    hit = np.flatnonzero(~np.isnan(t_hi))
    if hit.size == 0:
        return result()
    rays, vol, px, py, ray_iso = rays[hit], vol[hit], px[hit], py[hit], ray_iso[hit]
    t_lo, t_hi = t_lo[hit], t_hi[hit]
    for _ in range(int(refine)):  # bisection: field(t_lo) < iso <= field(t_hi)
        mid = 0.5 * (t_lo + t_hi)
        inside_mid = field(px, py, mid, vol) >= ray_iso
        t_hi = np.where(inside_mid, mid, t_hi)
        t_lo = np.where(inside_mid, t_lo, mid)
    t_hit = 0.5 * (t_lo + t_hi) if refine else t_hi

    # Outward normal -grad f: central differences (half a voxel) along the view axes, all six
    # samples in one evaluation. z = 1 - t, so +z is -t.
    h = 0.5 * voxel
    offsets = np.array([[h, 0, 0], [-h, 0, 0], [0, h, 0], [0, -h, 0], [0, 0, -h], [0, 0, h]])  # (dx, dy, dt)
    f6 = field(px[:, None] + offsets[:, 0], py[:, None] + offsets[:, 1], t_hit[:, None] + offsets[:, 2],
               vol[:, None])  # [R, 6]
    n = -(f6[:, 0::2] - f6[:, 1::2]) / (2 * h)
    n[:, 2] = np.maximum(n[:, 2], 0.0)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))

    normals[rays] = n
    depth[rays] = np.clip(0.5 * t_hit, 0.0, 1.0)
    mask[rays] = 1.0
    return result()


def raycast(volume, iso: float, resolution, view=None, *, step: float = 0.5,
            refine: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render the isosurface ``field = iso`` of `volume` as normals, depth and mask.

    Orthographic camera looking along ``-z`` (see the module docstring for the coordinate,
    depth and normal conventions). Every ray is marched with a fixed step of ``step``
    voxels, from the first to the last point where it meets the (view-space) bounding box
    of a cell with a corner ``>= iso`` (conservative: elsewhere the field is below `iso`),
    in rounds of a few steps so that rays that hit stop early (empty-space skipping; all
    rays at once, no per-pixel Python loop). The first step that enters the inside
    (``field >= iso``) is refined by `refine` bisections of the trilinear field, after which
    the crossing is known to ``step * voxel / 2**refine``. A surface cut by the near plane
    is hit at depth 0. `raycast_batch` does the same for many volumes at once.

    Args:
      volume: ``[D, D, D]`` finite values, indexed ``[x, y, z]``.
      iso: the isovalue, strictly between ``volume.min()`` and ``volume.max()``.
      resolution: ``H`` (square image) or ``(H, W)``, each >= 1.
      view: None (identity) or a rotation ``[3, 3]`` of the volume (`random_rotation`).
      step: marching step in voxels (> 0); features thinner than a step may be missed.
      refine: bisection steps (>= 0).
    Returns:
      ``normals`` float32 ``[H, W, 3]`` (unit, outward, view space, ``n_z >= 0``; zero
      where no hit), ``depth`` float32 ``[H, W]`` in [0, 1] (`NO_HIT_DEPTH` where no hit),
      ``mask`` float32 ``[H, W]`` in {0, 1}.
    Raises:
      ValueError: non-cubic or non-finite volume, resolution < 1, iso not strictly inside
        the volume's value range, a view that is not a rotation, step <= 0, refine < 0.
    """
    vol = _check_volumes(volume, batched=False)
    if not (np.ndim(iso) == 0 and np.isfinite(float(iso))):
        raise ValueError(f"iso must be a finite number, got {iso!r}")
    if view is not None and np.shape(view) != (3, 3):
        raise ValueError(f"view must be None or a 3x3 rotation matrix, got shape {np.shape(view)}")
    normals, depth, mask = raycast_batch(vol[None], float(iso), resolution, None if view is None else [view],
                                         step=step, refine=refine)
    return normals[0], depth[0], mask[0]


# -- geometry images ---------------------------------------------------------------------------


def geometry_image(normals, depth, mask) -> np.ndarray:
    """Stack ``normals [..., H, W, 3]``, ``depth [..., H, W]`` and ``mask [..., H, W]`` into a
    geometry image float32 ``[..., H, W, 5]`` (channels `CHANNELS`)."""
    normals = np.asarray(normals, np.float32)
    depth = np.asarray(depth, np.float32)
    mask = np.asarray(mask, np.float32)
    if normals.shape[-1:] != (3,) or depth.shape != normals.shape[:-1] or mask.shape != depth.shape:
        raise ValueError(
            f"expected normals [..., H, W, 3], depth and mask [..., H, W]; got shapes "
            f"{normals.shape}, {depth.shape}, {mask.shape}"
        )
    return np.concatenate([normals, depth[..., None], mask[..., None]], axis=-1)


def split_geometry_image(image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of `geometry_image`: ``[..., H, W, 5]`` -> normals ``[..., H, W, 3]``,
    depth ``[..., H, W]``, mask ``[..., H, W]`` (views of the input's float32 copy)."""
    image = np.asarray(image, np.float32)
    if image.ndim < 3 or image.shape[-1] != 5:
        raise ValueError(f"a geometry image is [..., H, W, 5], got shape {image.shape}")
    return image[..., :3], image[..., 3], image[..., 4]


def render(volume, iso: float, resolution, view=None, **kwargs) -> np.ndarray:
    """`raycast` stacked into a geometry image float32 ``[H, W, 5]``."""
    return geometry_image(*raycast(volume, iso, resolution, view, **kwargs))


def srnet_pairs(n: int, seed: int = 0, low: int = 16, factor: int = 4, *,
                size: int = PAIRS_VOLUME_SIZE, iso: float = PAIRS_ISO,
                rotate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs for geometry-image super-resolution (the paper's SRNet task).

    Pair ``i`` renders ``blob_volume(rng_i, size)`` at `iso` twice, from the same view, at
    ``low x low`` and at ``(low*factor) x (low*factor)`` pixels (both point-sampled at pixel
    centres, so the low-res image is what a renderer at that resolution produces, aliasing
    included). ``rng_i`` is child ``i`` of ``numpy.random.SeedSequence(seed)``, so pair ``i``
    does not depend on `n`: ``srnet_pairs(100, s)[k][:10] == srnet_pairs(10, s)[k]``.
    With ``rotate=True`` each volume is also seen under its own `random_rotation` (drawn
    from the same generator); off by default because the blob volumes' distribution is
    already rotation invariant.

    Returns:
      low-res inputs float32 ``[n, low, low, 5]`` and high-res targets float32
      ``[n, low*factor, low*factor, 5]`` (geometry images, channels `CHANNELS`).
    """
    n, low, factor = int(n), int(low), int(factor)
    if n < 0 or low < 1 or factor < 1:
        raise ValueError(f"need n >= 0, low >= 1 and factor >= 1, got n={n}, low={low}, factor={factor}")
    high = low * factor
    inputs = np.zeros((n, low, low, 5), np.float32)
    targets = np.zeros((n, high, high, 5), np.float32)
    children = np.random.SeedSequence(seed).spawn(n)
    for start in range(0, n, _PAIRS_BATCH):  # volumes are ray cast _PAIRS_BATCH at a time
        volumes, views = [], []
        for child in children[start:start + _PAIRS_BATCH]:
            rng = np.random.default_rng(child)
            volumes.append(blob_volume(rng, size))
            views.append(random_rotation(rng) if rotate else np.eye(3))
        volumes = np.stack(volumes)
        views = np.stack(views) if rotate else None
        stop = start + len(volumes)
        inputs[start:stop] = geometry_image(*raycast_batch(volumes, iso, low, views))
        targets[start:stop] = geometry_image(*raycast_batch(volumes, iso, high, views))
    return inputs, targets
