"""Integer codes shared by every kernel, and the numba options they are compiled with.

Private module (the kernels package re-exports the event flags). Rounding modes and
structures take their codes from the names' order in :mod:`accsim.numerics.formats` and
:mod:`accsim.numerics.datapath`, so the codes are defined once.
"""

from ..datapath import STRUCTURES
from ..formats import MODE_CODES

# numba options of every kernel. Never fastmath: it folds (x + c) - c and contracts
# multiply-adds into FMAs (tests/test_style.py checks that no module asks for it).
JIT = dict(nogil=True, cache=True, error_model="numpy")

# rounding modes (accsim.numerics.formats.rounding_code of each name)
RNE, RNA, RZ, RU, RD, RO, SR = (MODE_CODES[m] for m in ("rne", "rna", "rz", "ru", "rd",
                                                         "ro", "sr"))

# structures (the position of each name in accsim.numerics.datapath.STRUCTURES)
S_SEQ, S_CHUNK, S_TREE, S_FUSED = (STRUCTURES.index(s) for s in ("sequential", "chunked",
                                                                  "tree", "fused"))

# event flags returned with every rounding
F_INEXACT = 1      # result differs from the exact value
F_OVERFLOW = 2     # exact value beyond the largest finite (or out of integer range)
F_SATURATE = 4     # the result was clamped to the largest magnitude
F_UNDERFLOW = 8    # nonzero tiny result flushed to zero (subnormals off) or inexact tiny
F_INVALID = 16     # input with no meaning in the format (NaN without NaN, inf with wrap)
F_UNREPR = 32      # exact integer result has no float64 representation (bits > 53)
