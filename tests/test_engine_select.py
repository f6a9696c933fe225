"""accsim.numerics.engine.matmul(select=...): only the chosen outputs are computed.

A boolean (m, n) mask and a (rows, cols) pair of index arrays must both give exactly the
values of the full product at the selected positions (bit for bit, stochastic rounding
included: its stream is keyed by the output, not by the position in the selection) and
NaN elsewhere. Events are restricted to the selected outputs: per-row counts equal the
oracle's counts over the selected outputs only, and unselected flags are 0.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest

from accsim import FixedFormat, FloatFormat, IntFormat
from accsim.numerics.engine import matmul

FP16 = FloatFormat(5, 10, name="fp16")
FP32 = FloatFormat(8, 23, name="fp32")
E5M7 = FloatFormat(5, 7, name="e5m7")
E4M3 = FloatFormat(4, 3, name="e4m3")

CASES = {
    "fp16-seq": (FP16, dict()),
    "e5m7-seq-rz": (E5M7, dict(rounding="rz")),
    "e5m7-chunked": (E5M7, dict(structure="chunked", chunk_size=4, wide=FP32)),
    "fp16-tree": (FP16, dict(structure="tree", rounding="rd")),
    "e5m7-fused": (E5M7, dict(structure="fused", terms=4, guard_bits=2)),
    "fp16-prod-e4m3": (FP16, dict(product=E4M3, product_rounding="rne")),
    "e4m3-overflow": (E4M3, dict(rounding="rne")),
    "int16-sat": (IntFormat(16, overflow="saturate"), dict()),
    "int12-wrap-chunked": (IntFormat(12), dict(structure="chunked", chunk_size=5,
                                                wide=IntFormat(16, overflow="saturate"))),
    "q12.4-sat": (FixedFormat(12, 4, overflow="saturate"), dict(rounding="rne")),
}


def operands(rng, acc, m, k, n):
    if isinstance(acc, IntFormat):
        return (rng.integers(-128, 128, (m, k)).astype(float),
                rng.integers(-128, 128, (k, n)).astype(float))
    if isinstance(acc, FixedFormat):
        return rng.integers(-64, 64, (m, k)) / 8.0, rng.integers(-64, 64, (k, n)) / 16.0
    grid = naive.grid_values(E4M3, min_exp=-3, max_exp=4 if acc == E4M3 else 3)
    return rng.choice(grid, (m, k)), rng.choice(grid, (k, n))


def _check(full, sel, mask, label):
    exp = np.where(mask, full.values, np.nan)
    assert sel.values.shape == full.values.shape and sel.values.dtype == np.float64
    naive.assert_values(sel.values, exp, label=label)
    f = np.asarray(sel.events.flags)
    assert np.array_equal(f[~mask], np.zeros(int((~mask).sum()), dtype=f.dtype)), \
        f"{label}: unselected outputs have flags"
    assert np.array_equal(f[mask], np.asarray(full.events.flags)[mask]), f"{label}: flags differ"


@pytest.mark.parametrize("case", list(CASES))
def test_mask_and_indices_match_full(case):
    acc, kw = CASES[case]
    rng = np.random.default_rng(len(case))
    m, k, n = 7, 20, 6
    a, b = operands(rng, acc, m, k, n)
    bias = None if "bias" in kw else rng.choice([0.0, 1.0, -2.0], n)
    full = matmul(a, b, acc, bias=bias, **kw)
    mask = rng.random((m, n)) < 0.3
    mask[2, :] = False               # an empty row
    mask[4, :] = True                # a full row
    rows, cols = np.nonzero(mask)
    perm = rng.permutation(rows.size)          # order of the index pairs is irrelevant
    by_mask = matmul(a, b, acc, bias=bias, select=mask, **kw)
    by_idx = matmul(a, b, acc, bias=bias, select=(rows[perm], cols[perm]), **kw)
    _check(full, by_mask, mask, f"{case} mask")
    _check(full, by_idx, mask, f"{case} (rows, cols)")
    # events restricted to the selected outputs: the oracle over those outputs only
    ref = naive.matmul(a, b, acc, bias=bias, outputs=list(zip(rows.tolist(), cols.tolist())),
                       **kw)
    naive.assert_values(by_mask.values, ref.values, a, b, f"{case} vs oracle",
                        signed_zero=isinstance(acc, FloatFormat))
    for sel, how in ((by_mask, "mask"), (by_idx, "indices")):
        naive.assert_events(sel.events, ref, f"{case} {how} events")
        assert sel.events.overflows[2] == 0 and sel.events.inexact[2] == 0


@pytest.mark.parametrize("structure", ["sequential", "chunked", "tree", "fused"])
def test_sr_selected_equals_full(structure):
    """Stochastic rounding: a recomputed output gets the same draws as in the full run."""
    rng = np.random.default_rng(3)
    a, b = operands(rng, E5M7, 9, 33, 8)
    kw = dict(rounding="sr", seed=1234, structure=structure)
    if structure == "chunked":
        kw.update(chunk_size=8, wide=FloatFormat(5, 9))
    full = matmul(a, b, E5M7, **kw)
    mask = rng.random((9, 8)) < 0.25
    sel = matmul(a, b, E5M7, select=mask, **kw)
    _check(full, sel, mask, f"sr {structure}")
    rows, cols = np.nonzero(mask)
    sel2 = matmul(a, b, E5M7, select=(rows[::-1], cols[::-1]), **kw)
    _check(full, sel2, mask, f"sr {structure} indices")


def test_single_output_and_empty_selection():
    rng = np.random.default_rng(5)
    a, b = operands(rng, FP16, 4, 10, 5)
    full = matmul(a, b, FP16, rounding="rz")
    one = matmul(a, b, FP16, rounding="rz", select=(np.array([3]), np.array([1])))
    mask = np.zeros((4, 5), dtype=bool)
    mask[3, 1] = True
    _check(full, one, mask, "single output")
    none = matmul(a, b, FP16, rounding="rz", select=np.zeros((4, 5), dtype=bool))
    assert np.isnan(none.values).all()
    assert none.events.total == {"overflows": 0, "saturations": 0, "inexact": 0}
    assert np.asarray(none.events.inexact).shape == (4,)


def test_select_all_equals_full():
    rng = np.random.default_rng(7)
    a, b = operands(rng, E4M3, 5, 16, 5)
    full = matmul(a, b, E4M3)
    every = matmul(a, b, E4M3, select=np.ones((5, 5), dtype=bool))
    naive.assert_values(every.values, full.values, label="select all")
    for nm in ("overflows", "saturations", "inexact", "flags"):
        assert np.array_equal(getattr(every.events, nm), getattr(full.events, nm)), nm


def test_selected_overflow_events_per_row():
    """Rows with overflowing outputs: per-row counts include only the selected ones."""
    a = np.full((3, 4), 15.0)
    b = np.full((4, 3), 15.0)        # products 225, sums overflow e4m3 (max 240)
    b[:, 1] = 1.0                    # column 1 never overflows
    mask = np.array([[True, True, False], [False, True, False], [True, False, True]])
    sel = matmul(a, b, E4M3, rounding="rz", select=mask)
    ref = naive.matmul(a, b, E4M3, rounding="rz", outputs=list(zip(*np.nonzero(mask))))
    assert ref.overflows.tolist() == [3, 0, 6]
    naive.assert_events(sel.events, ref, "selected overflow rows")
    naive.assert_values(sel.values, ref.values, a, b, "selected overflow rows")


@pytest.mark.parametrize("k", [1, 7, 8, 9, 37, 64])
@pytest.mark.parametrize("acc,kw", [
    (FP16, {}),                                            # float32 lanes, rne step
    (E5M7, dict(rounding="ru")),                           # float32 lanes, general step
    (FloatFormat(8, 30), dict(rounding="rz")),             # float64 lanes
    (E5M7, dict(structure="chunked", chunk_size=5, wide=FP32)),
], ids=["fp16", "e5m7-ru", "e8m30-rz", "e5m7-chunked"])
def test_scattered_selection_blocks(k, acc, kw):
    """Scattered selections (a few outputs per row: the (row, col) pair blocks, whose
    products are formed eight lanes by eight k at a time) against the oracle, for
    depths that are and are not multiples of 8, lane counts that are not, and masks
    given as non-contiguous views."""
    rng = np.random.default_rng(k)
    m, n = 40, 70
    a, b = operands(rng, acc, m, k, n)
    big = np.zeros((m, 2 * n), dtype=bool)
    big[:, ::2] = rng.random((m, n)) < 0.06
    mask = big[:, ::2]                                   # a strided view
    assert not mask.flags.c_contiguous
    sel = matmul(a, b, acc, select=mask, **kw)
    full = matmul(a, b, acc, **kw)
    _check(full, sel, mask, f"pairs k={k}")
    rows, cols = np.nonzero(mask)
    ref = naive.matmul(a, b, acc, outputs=list(zip(rows.tolist(), cols.tolist())), **kw)
    naive.assert_values(sel.values, ref.values, a, b, f"pairs k={k} vs oracle")
    naive.assert_events(sel.events, ref, f"pairs k={k} events")
