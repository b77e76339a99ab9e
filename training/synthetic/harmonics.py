"""Real spherical harmonics of degree 2-4: the lobulation of a synthetic nodule's surface.

Written as polynomials of the unit direction (x, y, z) -- P_l^(m)(z) * Re/Im((x + iy)^m),
the m-th derivative of the Legendre polynomial times a harmonic polynomial -- so evaluating them
on a nodule's voxels is plain numpy, with no angles and no special-function calls.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numpy as np
from numpy.polynomial import legendre

DEGREES = (2, 3, 4)
#: (degree, order) of each basis function, m < 0 meaning the sine part.
TERMS: tuple[tuple[int, int], ...] = tuple(
    (degree, m) for degree in DEGREES for m in range(-degree, degree + 1)
)
_DERIVATIVES = {
    (degree, m): legendre.Legendre.basis(degree).deriv(m).convert(kind=np.polynomial.Polynomial)
    for degree in DEGREES
    for m in range(degree + 1)
}


def _norm(degree: int, m: int) -> float:
    factor = (
        (2 * degree + 1) / (4 * math.pi) * math.factorial(degree - m) / math.factorial(degree + m)
    )
    return math.sqrt(factor) * (math.sqrt(2.0) if m else 1.0)


def basis(ux: np.ndarray, uy: np.ndarray, uz: np.ndarray) -> list[np.ndarray]:
    """The orthonormal real spherical harmonics of ``TERMS`` at unit directions (ux, uy, uz)."""
    xy = (ux + 1j * uy).astype(np.complex64)
    powers = [np.ones_like(xy)]
    for _ in range(max(DEGREES)):
        powers.append(powers[-1] * xy)
    out = []
    for degree, m in TERMS:
        k = abs(m)
        radial = _DERIVATIVES[(degree, k)](uz).astype(np.float32)
        angular = powers[k].imag if m < 0 else powers[k].real
        out.append((np.float32(_norm(degree, k)) * radial * angular).astype(np.float32))
    return out


#: Exponents (a, b, c) of the monomials x^a y^b z^c of degrees 3 and 4: on the unit sphere
#: their span holds every harmonic of degree 2-4 (degree 2 times x^2 + y^2 + z^2 = 1), so a
#: combination of ``TERMS`` is one weighted sum of these, far fewer array passes than the basis.
MONOMIALS: tuple[tuple[int, int, int], ...] = tuple(
    (a, b, degree - a - b) for degree in (3, 4) for a in range(degree, -1, -1)
    for b in range(degree - a, -1, -1)
)


def _powers(v: np.ndarray) -> list[np.ndarray]:
    """v^0 .. v^4."""
    v2 = v * v
    return [np.ones_like(v), v, v2, v2 * v, v2 * v2]


@cache
def _to_monomials() -> np.ndarray:
    """The (monomials, terms) matrix that rewrites a combination of ``TERMS`` as monomials,
    solved once by least squares on the sphere (exact: the harmonics lie in the span)."""
    x, y, z = fibonacci_sphere(2048)
    harmonic = np.stack(basis(x, y, z), axis=1).astype(np.float64)
    px, py, pz = _powers(x), _powers(y), _powers(z)
    monomial = np.stack([px[a] * py[b] * pz[c] for a, b, c in MONOMIALS], axis=1)
    solution, *_ = np.linalg.lstsq(monomial, harmonic, rcond=None)
    return np.asarray(solution)


def combine(coefficients: np.ndarray, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray) -> np.ndarray:
    """Y(u) = sum_i c_i Y_i(u) at unit directions (float32), as sum_a x^a * S_a(y, z)."""
    weights = _to_monomials() @ np.asarray(coefficients, dtype=np.float64)
    x, y, z = (np.asarray(v, dtype=np.float32) for v in (ux, uy, uz))
    py, pz = _powers(y), _powers(z)
    yz: dict[tuple[int, int], np.ndarray] = {}
    inner: dict[int, np.ndarray] = {}
    for (a, b, c), w in zip(MONOMIALS, weights, strict=True):
        if (b, c) not in yz:
            yz[(b, c)] = py[b] * pz[c]
        term = np.float32(w) * yz[(b, c)]
        inner[a] = inner[a] + term if a in inner else term
    px = _powers(x)
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
    for a, part in inner.items():
        total += part if a == 0 else px[a] * part
    return total


@lru_cache(maxsize=64)
def _weights(coefficients: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(w) for w in _to_monomials() @ np.asarray(coefficients))


def value_at(coefficients: tuple[float, ...], u: tuple[float, float, float]) -> float:
    """Y at one unit direction (plain floats: no array overhead for spikes and bubbles)."""
    x, y, z = u
    terms = zip(MONOMIALS, _weights(coefficients), strict=True)
    return float(sum(w * x**a * y**b * z**c for (a, b, c), w in terms))


def fibonacci_sphere(n: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` nearly evenly spread unit directions."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = math.pi * (1 + math.sqrt(5)) * i
    return r * np.cos(phi), r * np.sin(phi), z


@cache
def _sphere_basis() -> np.ndarray:
    """The basis on ``fibonacci_sphere()`` as a (directions, terms) matrix, computed once."""
    return np.stack(basis(*(a.astype(np.float32) for a in fibonacci_sphere())), axis=1).astype(
        np.float64
    )


def random_lobulation(rng: np.random.Generator) -> np.ndarray:
    """Coefficients of a random combination of the degree 2-4 harmonics, scaled so that
    max |Y| over the sphere is 1."""
    coefficients = rng.standard_normal(len(TERMS))
    peak = float(np.max(np.abs(_sphere_basis() @ coefficients)))
    return coefficients / peak
