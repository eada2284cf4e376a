"""[R] Thm 1 (Kempf-Ness) and Thm 19 (Schatten-p) with pymanopt on the Fiber manifold."""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
import pymanopt
import pytest
from slopes import gradient_slope

from dln_manifolds import end_to_end, fiber_group_element
from dln_manifolds.pymanopt import Fiber, RoundingTolerantLineSearcher

OPTIMIZERS = {
    "SteepestDescent": pymanopt.optimizers.SteepestDescent,
    "ConjugateGradient": pymanopt.optimizers.ConjugateGradient,
    "TrustRegions": pymanopt.optimizers.TrustRegions,
}


def _fiber(seed, d, N, cplx):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((d, d)) + 2 * np.eye(d)
    if cplx:
        X = X + 1j * rng.standard_normal((d, d))
    return Fiber(X, N, seed=seed)


def _norm_problem(M):
    @pymanopt.function.numpy(M)
    def cost(W):
        return float(np.sum(np.abs(W) ** 2))

    @pymanopt.function.numpy(M)
    def egrad(W):
        return 2 * W

    @pymanopt.function.numpy(M)
    def ehess(W, V):
        return 2 * V

    return pymanopt.Problem(M, cost, euclidean_gradient=egrad, euclidean_hessian=ehess)


def _optimizer(name, problem):
    if name == "TrustRegions":
        return pymanopt.optimizers.TrustRegions(verbosity=0, min_gradient_norm=1e-12)
    # pymanopt's Armijo searchers cannot resolve cost decreases below the rounding of |W|^2,
    # which stalls SD/CG at |G| ~ 1e-8 |W|^2 ("min step_size reached"); see
    # RoundingTolerantLineSearcher. min_step_size=0 so that min_gradient_norm decides.
    return OPTIMIZERS[name](
        verbosity=0,
        min_gradient_norm=1e-10,
        min_step_size=0.0,
        max_iterations=3000,
        line_searcher=RoundingTolerantLineSearcher(gradient=problem.riemannian_gradient),
    )


def _orbit_defect(M, W):
    """max |A_k^* A_k - I| for the group element with A . C = W (0 iff W is in the orbit O_X)."""
    A = fiber_group_element(M.center, W)
    return float(np.max(np.abs(np.conj(np.swapaxes(A, 1, 2)) @ A - np.eye(M.d))))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize(("d", "N", "cplx"), [(3, 3, False), (2, 4, True)])
def test_kempf_ness_minimizers_are_the_orbit_of_the_center(name, d, N, cplx):
    M = _fiber(11, d, N, cplx)
    problem = _norm_problem(M)
    W0 = M.random_point()
    res = _optimizer(name, problem).run(problem, initial_point=W0)
    W = res.point
    norm_sq = float(np.sum(np.abs(W) ** 2))
    # balanced: |G| <= 1e-8 |W|^2
    assert np.linalg.norm(M.moments(W)) <= 1e-8 * norm_sq
    # the Kempf-Ness minimum N tr(Sigma^{2/N}) ([R] Thm 1); |W|^2 - min = O(|G|^2)
    assert norm_sq == pytest.approx(M.minimum_norm_sq(), rel=1e-10)
    # in the orbit of the center: orthogonal/unitary orbit coordinates (defect O(|G|)), and
    # every layer has singular values Sigma^{1/N}
    assert _orbit_defect(M, W) <= 1e-7
    lam = np.linalg.svd(M.X, compute_uv=False) ** (1.0 / N)
    assert np.max(np.abs(np.linalg.svd(W, compute_uv=False) - lam)) <= 1e-7 * lam.max()
    assert np.linalg.norm(end_to_end(W) - M.X) <= 1e-13 * np.linalg.norm(M.X)
    if name == "TrustRegions":
        # superlinear convergence: second-order retraction + exact Riemannian Hessian
        assert res.iterations <= 10
        assert res.gradient_norm <= 1e-12


def _schatten_problem(M, p):
    """Sum of Schatten p-norms ([R] eq. 3.8) with an autograd cost.

    No smoothing is needed: on F_X every layer is invertible, and the Schatten norm is smooth
    at invertible matrices (autograd differentiates svd(compute_uv=False) as U diag(g) V^T).
    """

    @pymanopt.function.autograd(M)
    def cost(W):
        s = anp.linalg.svd(W, compute_uv=False)
        return anp.sum(anp.sum(s**p, axis=-1) ** (1.0 / p))

    return pymanopt.Problem(M, cost)


@pytest.mark.filterwarnings("ignore:Conversion of an array:DeprecationWarning")  # pymanopt
@pytest.mark.parametrize("p", [1.5, 3.0])
def test_schatten_p_minimizers_are_balanced(p):
    M = _fiber(12, 3, 3, False)
    problem = _schatten_problem(M, p)
    W0 = M.random_point()
    assert gradient_slope(problem, W0, M.random_tangent_vector(W0)) == pytest.approx(2, abs=0.1)
    res = _optimizer("ConjugateGradient", problem).run(problem, initial_point=W0)
    W = res.point
    # [R] Thm 19: argmin = F_X cap M, so the minimum is N (sum_i sigma_i^{p/N})^{1/p}
    sigma = np.linalg.svd(M.X, compute_uv=False)
    target = M.depth * np.sum(sigma ** (p / M.depth)) ** (1.0 / p)
    assert res.cost == pytest.approx(target, rel=1e-10)
    assert np.linalg.norm(M.moments(W)) <= 1e-8 * np.sum(W**2)
    assert _orbit_defect(M, W) <= 1e-7
