"""The vectorised fast kernels agree with the general scalar path, bit for bit.

The MPFR step-by-step oracle (tests/naive.py) is the reference for correctness; this
module adds a cheap, broad consistency check between the engine's two code paths on
inputs that exercise the fast path's hand-offs: overflow to inf/NaN and back, zero sums,
tiny sums, man_bits = 0, saturating and fn/fnuz formats. Rounding every (exact) product
to e8m23 first routes each step through the general path, so both runs compute the
same mathematical sequence of roundings.
"""

import numpy as np
import pytest

from accsim import FloatFormat, matmul, quantize

FORMATS = [FloatFormat(5, 0), FloatFormat(4, 1), FloatFormat(3, 0, subnormals=False),
           FloatFormat(8, 23), FloatFormat(4, 3, specials="fn"),
           FloatFormat(5, 2, overflow="saturate"), FloatFormat(3, 1, specials="fnuz"),
           FloatFormat(5, 10, subnormals=False)]


@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
@pytest.mark.parametrize("scale", [1e-4, 1.0, 40.0])
def test_fast_path_matches_general_path(fmt, scale):
    rng = np.random.default_rng(11)
    a = quantize(rng.standard_normal((6, 40)) * scale, "e5m2")
    b = quantize(rng.standard_normal((40, 5)), "e5m2")
    a[0, :4] = 0.0
    a[1, 3] = -0.0
    for mode in ("rne", "rna", "rz", "ru", "rd", "ro"):
        fast = matmul(a, b, fmt, rounding=mode)
        slow = matmul(a, b, fmt, rounding=mode, product="e8m23")
        assert np.array_equal(fast.values, slow.values, equal_nan=True), mode
        assert np.array_equal(np.signbit(fast.values), np.signbit(slow.values)), mode
        assert np.array_equal(fast.events.flags, slow.events.flags), mode
        assert fast.events.total == slow.events.total, mode
        mask = rng.random((6, 5)) < 0.4
        sel = matmul(a, b, fmt, rounding=mode, select=mask)
        assert np.array_equal(sel.values[mask], fast.values[mask], equal_nan=True), mode
        assert np.array_equal(np.signbit(sel.values[mask]), np.signbit(fast.values[mask]))
