"""The fit behind kernels/src/math.rs's ERFC_P (see docs/numerics.md, `gelu`).

erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z/2), for |x| = z sqrt(2) in [1, 14.5].
Fits P of degree 8 by reweighted least squares over Chebyshev nodes in t, rounding each
coefficient to f32 before fitting the next, and prints the coefficients (highest first)
and the largest error against the exact function. Needs numpy.
"""

import math

import numpy as np

LO, HI = 1 / (1 + 0.35355339 * 14.5), 1 / (1 + 0.35355339 * 1.0)


def exact(t):
    z = 2 * (1 / t - 1)
    return math.log(math.erfc(z)) + z * z - math.log(t)


def fit(deg=8, nodes=6000):
    k = np.arange(nodes)
    tt = (LO + HI) / 2 + (HI - LO) / 2 * np.cos(np.pi * (k + 0.5) / nodes)
    y = np.array([exact(t) for t in tt])
    fixed = []
    for j in range(deg + 1):
        r = y - sum(c * tt**i for i, c in enumerate(fixed))
        a = np.vstack([tt**i for i in range(j, deg + 1)]).T
        w = np.ones(nodes)
        for _ in range(30):
            sol = np.linalg.lstsq(a * w[:, None], r * w, rcond=None)[0]
            e = np.abs(a @ sol - r)
            w = w * (1 + e / e.max())
            w /= w.mean()
        fixed.append(float(np.float32(sol[0])))
    return np.array(fixed)


if __name__ == "__main__":
    p = fit()
    tg = np.linspace(LO, HI, 20001)
    err = np.max(np.abs(np.polynomial.polynomial.polyval(tg, p) - [exact(t) for t in tg]))
    print("coefficients, highest first:", [repr(np.float32(c)) for c in p[::-1]])
    print("max |P - exact|:", err)
