"""Acceptance tests for lucid_ifv.critical_space (Algorithm 1, eps search, selection)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from lucid_ifv.critical_space import (
    SampleSpectrum,
    TrivialSpace,
    critical_basis,
    enumerate_trivial_spaces,
    estimate_trivial_space,
    merge_subspaces,
    principal_vectors,
    select_critical_space,
    spectrum,
    trivial_subspace,
)
from lucid_ifv.metrics import angle_deg
from lucid_ifv.sampling import sample_hoyer_targets

K, D, N, DEAD = 10, 40, 24, 4


def _angles_to_subspace(vectors, basis):
    """Angle (deg) of each column of `vectors` to span(basis)."""
    proj = basis @ (basis.T @ vectors)
    return angle_deg(vectors.T, proj.T)


@pytest.fixture(scope="module")
def synthetic():
    """N matrices M_i [K, D] as in the paper's Sec. 3.5 set-up.

    Every M_i annihilates (on the left) the dead feature e_DEAD, the shift direction
    1/sqrt(K), and its own target's component orthogonal to those (the realization is an
    optimum of its target); plus relative noise 1e-5.
    """
    rng = np.random.default_rng(7)
    trivial = scipy.linalg.orth(np.stack([np.eye(K)[DEAD], np.ones(K) / np.sqrt(K)], axis=1))
    targets, _ = sample_hoyer_targets(K, N, 11)
    mats = []
    for t in targets:
        tt = t - trivial @ (trivial.T @ t)
        null = scipy.linalg.orth(np.column_stack([trivial, tt]))
        g = rng.standard_normal((K, D))
        mats.append((np.eye(K) - null @ null.T) @ g + 1e-5 * rng.standard_normal((K, D)))
    return {"trivial": trivial, "targets": targets, "mats": mats, "spectra": [spectrum(m) for m in mats]}


def ifv_solve(mats, targets, basis):
    """Stand-in for the IFV solve: smallest left-singular vector of B^T M_i, mapped back."""
    preds = []
    for m, t in zip(mats, targets):
        u = np.linalg.svd(basis.T @ m)[0][:, -1]
        p = basis @ u
        preds.append(p if p @ t >= 0 else -p)  # sign fix (<f, t> > 0 in the real solve)
    return np.array(preds)


# --- spectra and per-sample subspaces -------------------------------------------------

@pytest.mark.parametrize("d", [3, 10, 25])
def test_spectrum_matches_svd(d):
    rng = np.random.default_rng(d)
    m = rng.standard_normal((10, d))
    spec = spectrum(m)
    s_ref = np.linalg.svd(m, compute_uv=False)
    full = np.sort(np.concatenate([s_ref, np.zeros(10 - s_ref.size)]))
    np.testing.assert_allclose(spec.singular_values, full, atol=1e-12)
    u = spec.left_vectors
    np.testing.assert_allclose(u.T @ u, np.eye(10), atol=1e-12)
    # each column is a left-singular vector: |M^T u_j| = s_j
    np.testing.assert_allclose(np.linalg.norm(m.T @ u, axis=0), spec.singular_values, atol=1e-10)


def test_trivial_subspace_relative_threshold():
    u = scipy.linalg.orth(np.random.default_rng(0).standard_normal((4, 4)))
    spec = SampleSpectrum(np.array([1e-6, 1e-3, 0.5, 2.0]), u)
    assert trivial_subspace(spec, 1e-4).shape == (4, 1)   # 1e-6 < 2e-4
    assert trivial_subspace(spec, 1e-2).shape == (4, 2)
    np.testing.assert_array_equal(trivial_subspace(spec, 1e-2), u[:, :2])
    assert trivial_subspace(spec, 0.0).shape == (4, 0)
    scaled = SampleSpectrum(spec.singular_values * 1e8, u)  # scale-free
    assert trivial_subspace(scaled, 1e-2).shape == (4, 2)
    assert trivial_subspace(np.zeros((4, 6)), 1e-3).shape == (4, 4)  # sigma_max == 0: all trivial


# --- principal vectors and merging --------------------------------------------------

def test_principal_vectors_match_scipy_and_small_angles():
    rng = np.random.default_rng(1)
    a = scipy.linalg.orth(rng.standard_normal((12, 4)))
    b = scipy.linalg.orth(rng.standard_normal((12, 3)))
    ang, pa, pb = principal_vectors(a, b)
    np.testing.assert_allclose(ang, np.sort(np.degrees(scipy.linalg.subspace_angles(a, b))), atol=1e-8)
    np.testing.assert_allclose(pa.T @ pb, np.diag(np.cos(np.radians(ang))), atol=1e-10)
    np.testing.assert_allclose(pa.T @ pa, np.eye(3), atol=1e-10)
    assert np.allclose(a @ (a.T @ pa), pa) and np.allclose(b @ (b.T @ pb), pb)
    ang2, pb2, pa2 = principal_vectors(b, a)  # smaller subspace first
    np.testing.assert_allclose(ang2, ang, atol=1e-10)
    assert np.allclose(b @ (b.T @ pb2), pb2) and np.allclose(a @ (a.T @ pa2), pa2)
    np.testing.assert_allclose(pb2.T @ pa2, np.diag(np.cos(np.radians(ang))), atol=1e-10)
    # a rotation by 1e-9 rad is resolved (the cosine alone would report 0)
    c, s = np.cos(1e-9), np.sin(1e-9)
    x = np.eye(5)[:, :2]
    y = np.column_stack([x[:, 0], c * x[:, 1] + s * np.eye(5)[:, 3]])
    ang, _, _ = principal_vectors(x, y)
    np.testing.assert_allclose(np.radians(ang), [0.0, 1e-9], rtol=1e-6, atol=1e-15)


def test_merge_identical_and_orthogonal():
    rng = np.random.default_rng(2)
    a = scipy.linalg.orth(rng.standard_normal((8, 3)))
    rot = scipy.linalg.orth(rng.standard_normal((3, 3)))
    merged = merge_subspaces(a, a @ rot, 3, 5)  # same span, other basis
    assert merged.shape == (8, 3)
    np.testing.assert_allclose(scipy.linalg.subspace_angles(merged, a), 0.0, atol=1e-7)
    np.testing.assert_allclose(merged.T @ merged, np.eye(3), atol=1e-12)
    e = np.eye(8)
    assert merge_subspaces(e[:, :3], e[:, 3:6]).shape == (8, 0)
    assert merge_subspaces(e[:, :3], np.zeros((8, 0))).shape == (8, 0)
    # shared e0, the rest orthogonal or beyond the cutoff: only e0 survives
    b = np.column_stack([e[:, 0], np.cos(np.radians(40)) * e[:, 1] + np.sin(np.radians(40)) * e[:, 6]])
    merged = merge_subspaces(e[:, :2], b, max_angle_deg=30)
    assert merged.shape == (8, 1) and abs(merged[0, 0]) == pytest.approx(1.0)
    assert merge_subspaces(e[:, :2], b, max_angle_deg=45).shape == (8, 2)


def test_merge_slerp_weight():
    e = np.eye(3)
    a = e[:, :1]
    b = (np.cos(np.radians(20)) * e[:, 0] + np.sin(np.radians(20)) * e[:, 1])[:, None]
    for wa, wb, expect in ((1, 1, 10.0), (1, 3, 15.0), (3, 1, 5.0)):
        w = merge_subspaces(a, b, wa, wb)[:, 0]
        assert angle_deg(np.abs(w), e[:, 0]) == pytest.approx(expect, abs=1e-9)


# --- Algorithm 1 ---------------------------------------------------------------------

def test_algorithm1_recovers_trivial_space(synthetic):
    result = estimate_trivial_space(synthetic["spectra"], eps=1e-2)
    assert isinstance(result, TrivialSpace) and result.sample_count == N
    assert result.dim == 2
    assert np.all(_angles_to_subspace(synthetic["trivial"], result.basis) < 5.0)
    assert np.all(_angles_to_subspace(np.eye(K)[:, [DEAD]], result.basis) < 5.0)
    # raw matrices are accepted too, odd sample counts work, result is deterministic
    again = estimate_trivial_space(synthetic["mats"][:7], eps=1e-2)
    assert again.dim == 2 and again.sample_count == 7
    np.testing.assert_array_equal(again.basis, estimate_trivial_space(synthetic["spectra"][:7], 1e-2).basis)
    # a single sample keeps its own (3-dim: trivial + own target) subspace
    assert estimate_trivial_space(synthetic["spectra"][:1], 1e-2).dim == 3


def test_eps_search_enumerates_dimensions(synthetic):
    cands = enumerate_trivial_spaces(synthetic["spectra"], 1e-8, 0.5, tol=1e-2)
    dims = [c.dim for c in cands]
    assert dims == sorted(set(dims))
    assert 0 in dims and 2 in dims
    rep = cands[dims.index(2)]
    assert np.all(_angles_to_subspace(synthetic["trivial"], rep.basis) < 5.0)
    lo, hi = rep.eps_range
    assert lo <= rep.eps <= hi
    assert estimate_trivial_space(synthetic["spectra"], rep.eps).dim == 2


def test_eps_search_finds_every_jump():
    """A staircase: shared directions with relative singular values 1e-6, 1e-4, 1e-2."""
    rng = np.random.default_rng(4)
    basis = scipy.linalg.orth(rng.standard_normal((6, 6)))
    specs = []
    for _ in range(5):
        s = np.array([1e-6, 1e-4, 1e-2, 0.3, 0.6, 1.0]) * (1 + 0.01 * rng.uniform(size=6))
        s[-1] = 1.0
        specs.append(SampleSpectrum(np.sort(s), basis))
    cands = enumerate_trivial_spaces(specs, 1e-8, 0.2, tol=1e-3)
    assert [c.dim for c in cands] == [0, 1, 2, 3]
    for c, jump in zip(cands[1:], (1e-6, 1e-4, 1e-2)):
        lo, hi = c.eps_range
        assert jump * 0.99 < lo < jump * 1.02 * 1.001  # located to tol past the largest sample value
        assert np.all(_angles_to_subspace(basis[:, :c.dim], c.basis) < 1e-6)


def test_critical_basis():
    e = np.eye(5)
    t = scipy.linalg.orth(np.column_stack([np.ones(5), e[:, 2]]))
    c = critical_basis(t)
    assert c.shape == (5, 3)
    np.testing.assert_allclose(c.T @ c, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(t.T @ c, 0.0, atol=1e-12)
    np.testing.assert_array_equal(critical_basis(np.zeros((5, 0))), np.eye(5))
    np.testing.assert_array_equal(critical_basis(None, 5), np.eye(5))
    assert TrivialSpace(t, 0.1, 3).critical_basis().shape == (5, 3)
    with pytest.raises(ValueError, match="critical space would be empty"):
        critical_basis(np.eye(5))
    with pytest.raises(ValueError, match="needs k"):
        critical_basis(None)
    with pytest.raises(ValueError, match=r"expected \[4, d\]"):
        critical_basis(t, 4)


def test_select_critical_space(synthetic):
    mats, targets, trivial = synthetic["mats"], synthetic["targets"], synthetic["trivial"]
    rng = np.random.default_rng(5)
    wrong = scipy.linalg.orth(rng.standard_normal((K, 2)))
    cands = [np.zeros((K, 0)), wrong, trivial, np.eye(K)]
    calls = []

    def predict(basis):
        calls.append(basis.shape)
        return ifv_solve(mats, targets, basis)

    best, scores = select_critical_space(cands, predict, targets)
    assert best == 2
    assert scores[2] < 1.0 and scores[0] > 5.0 and scores[1] > 5.0
    assert np.isinf(scores[3])  # empty critical space: skipped, never predicted
    assert calls == [(K, K), (K, K - 2), (K, K - 2)]
    # end to end: enumerate -> select picks the 2-dimensional trivial space
    found = enumerate_trivial_spaces(synthetic["spectra"], 1e-8, 0.5, tol=1e-2)
    found = [c for c in found if c.dim <= K - 2]  # critical spaces of >= 2 dimensions
    best, _ = select_critical_space(found, predict, targets)
    assert found[best].dim == 2


# --- bad inputs ------------------------------------------------------------------------

def test_bad_inputs(synthetic):
    specs = synthetic["spectra"]
    bad = synthetic["mats"][0].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        spectrum(bad)
    with pytest.raises(ValueError, match=r"spectra\[1\].*non-finite"):
        estimate_trivial_space([synthetic["mats"][0], bad], 1e-2)
    with pytest.raises(ValueError, match=r"spectra\[2\] has k = 9 features; expected k = 10"):
        estimate_trivial_space(specs[:2] + [spectrum(np.ones((9, 4)))], 1e-2)
    with pytest.raises(ValueError, match="no spectra"):
        estimate_trivial_space([], 1e-2)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        estimate_trivial_space(specs, -1.0)
    with pytest.raises(ValueError, match=r"max_angle_deg must lie in \(0, 90\]"):
        estimate_trivial_space(specs, 1e-2, max_angle_deg=120)
    with pytest.raises(ValueError, match="ascending"):
        SampleSpectrum(np.array([2.0, 1.0]), np.eye(2))
    with pytest.raises(ValueError, match=r"expected \[3, 3\]"):
        SampleSpectrum(np.array([0.0, 1.0, 2.0]), np.eye(2))
    with pytest.raises(ValueError, match="not orthonormal"):
        merge_subspaces(np.ones((4, 2)), np.eye(4)[:, :1])
    with pytest.raises(ValueError, match=r"Ub has shape \(5, 1\); expected \[4, d\]"):
        merge_subspaces(np.eye(4)[:, :1], np.eye(5)[:, :1])
    with pytest.raises(ValueError, match="weight_b must be a positive"):
        merge_subspaces(np.eye(4)[:, :1], np.eye(4)[:, :1], 1, 0)
    with pytest.raises(ValueError, match="0 < eps_lo < eps_hi"):
        enumerate_trivial_spaces(specs, 0.0, 0.5)
    targets = synthetic["targets"]
    with pytest.raises(ValueError, match=r"predict returned shape \(3, 10\)"):
        select_critical_space([np.zeros((K, 0))], lambda b: np.ones((3, K)), targets)
    with pytest.raises(ValueError, match="non-finite"):
        select_critical_space([np.zeros((K, 0))], lambda b: np.full((N, K), np.nan), targets)
    with pytest.raises(ValueError, match=r"candidates\[0\] has k = 9 rows; expected k = 10"):
        select_critical_space([np.zeros((9, 0))], lambda b: np.ones((N, K)), targets)
    with pytest.raises(ValueError, match="no usable candidate"):
        select_critical_space([np.eye(K)], lambda b: np.ones((N, K)), targets)
    with pytest.raises(ValueError, match="reduce must be"):
        select_critical_space([np.zeros((K, 0))], lambda b: np.ones((N, K)), targets, reduce="max")
