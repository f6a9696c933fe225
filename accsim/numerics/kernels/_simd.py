"""Vector building blocks numba does not emit by itself (LLVM IR written directly).

Private module. Nothing here rounds: these are exact data movements and IEEE
multiplies (``fmul`` without fast-math flags, never contracted into an FMA), so they
are the same operations as numba's scalar code, only laid out in vector registers.
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import config as numba_config
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)

# 8 x 8 transpose as three rounds of two-input shuffles (what AVX2 does with
# unpcklps/unpckhps, shufps and vperm2f128; LLVM picks the instructions, and
# legalises them for other targets)
_LO = (0, 8, 1, 9, 4, 12, 5, 13)
_HI = (2, 10, 3, 11, 6, 14, 7, 15)
_S0 = (0, 1, 8, 9, 4, 5, 12, 13)
_S1 = (2, 3, 10, 11, 6, 7, 14, 15)
_P0 = (0, 1, 2, 3, 8, 9, 10, 11)
_P1 = (4, 5, 6, 7, 12, 13, 14, 15)


def _shuffle(builder, x, y, mask):
    return builder.shuffle_vector(
        x, y, ir.Constant(ir.VectorType(_I32, len(mask)), [ir.Constant(_I32, i) for i in mask]))


def _transpose8(builder, rows):
    """The 8 columns of the 8 x 8 block whose rows are the vectors ``rows``."""
    t = []
    for i in range(0, 8, 2):
        t.append(_shuffle(builder, rows[i], rows[i + 1], _LO))
        t.append(_shuffle(builder, rows[i], rows[i + 1], _HI))
    tt = []
    for a, b in ((0, 2), (1, 3), (4, 6), (5, 7)):
        tt.append(_shuffle(builder, t[a], t[b], _S0))
        tt.append(_shuffle(builder, t[a], t[b], _S1))
    return ([_shuffle(builder, tt[i], tt[i + 4], _P0) for i in range(4)]
            + [_shuffle(builder, tt[i], tt[i + 4], _P1) for i in range(4)])


def _arrays_ok(*arrs):
    return all(isinstance(x, types.Array) and x.layout == "C"
               and x.dtype in (types.float32, types.float64) for x in arrs)


def _row_vectors(context, builder, aty, a, oty, of, kk, first):
    """Eight <8 x dtype> vectors: a.flat[offs[first + u] + k0 : ... + 8] for u in 0..7."""
    ad = context.make_array(aty)(context, builder, a).data
    od = context.make_array(oty)(context, builder, of).data
    vty = ir.VectorType(context.get_data_type(aty.dtype), 8)
    align = 4 if aty.dtype == types.float32 else 8      # element alignment only
    out = []
    for u in range(8):
        o = builder.add(builder.load(builder.gep(od, [ir.Constant(_I64, first + u)])), kk)
        out.append(builder.load(builder.bitcast(builder.gep(ad, [o]), vty.as_pointer()),
                                align=align))
    return out


def _store_columns(context, builder, dty, dd, d0v, ds, cols):
    """dst.flat[d0 + j * dstride : ... + 8] = cols[j] for j in 0..7."""
    dp = context.make_array(dty)(context, builder, dd).data
    vty = ir.VectorType(context.get_data_type(dty.dtype), 8)
    align = 4 if dty.dtype == types.float32 else 8
    for j, col in enumerate(cols):
        off = builder.add(d0v, builder.mul(ds, ir.Constant(_I64, j)))
        builder.store(col, builder.bitcast(builder.gep(dp, [off]), vty.as_pointer()),
                      align=align)


@intrinsic
def products_t8(typingctx, A, Bt, offs, k0, dst, d0, dstride):
    """Eight lanes' products for eight consecutive k, stored k-major.

    ``A``, ``Bt``, ``dst``: C-contiguous arrays of one float dtype; ``offs``: int64
    array whose entries 0..7 are the flat offsets of the lanes' rows of A and 8..15 of
    their rows of Bt. For u, j in 0..7:
    ``dst.flat[d0 + j * dstride + u] = A.flat[offs[u] + k0 + j] * Bt.flat[offs[8 + u] + k0 + j]``
    (one IEEE multiply each). The caller keeps every index in bounds.
    """
    if not (_arrays_ok(A, Bt, dst) and A.dtype == Bt.dtype == dst.dtype):
        return None
    sig = types.void(A, Bt, offs, k0, dst, d0, dstride)

    def codegen(context, builder, signature, args):
        a, bt, of, kk, dd, d0v, ds = args
        aty, bty, oty, _, dty, _, _ = signature.args
        ra = _row_vectors(context, builder, aty, a, oty, of, kk, 0)
        rb = _row_vectors(context, builder, bty, bt, oty, of, kk, 8)
        rows = [builder.fmul(x, y) for x, y in zip(ra, rb)]
        _store_columns(context, builder, dty, dd, d0v, ds, _transpose8(builder, rows))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def transpose8(typingctx, X, offs, k0, dst, d0, dstride):
    """``dst.flat[d0 + j * dstride + u] = X.flat[offs[u] + k0 + j]`` for u, j in 0..7,
    converted to dst's dtype (float64 to float32 rounds to nearest: the caller passes
    float32 values)."""
    if not _arrays_ok(X, dst):
        return None
    sig = types.void(X, offs, k0, dst, d0, dstride)

    def codegen(context, builder, signature, args):
        x, of, kk, dd, d0v, ds = args
        xty, oty, _, dty, _, _ = signature.args
        rows = _row_vectors(context, builder, xty, x, oty, of, kk, 0)
        if xty.dtype != dty.dtype:
            vty = ir.VectorType(context.get_data_type(dty.dtype), 8)
            rows = [builder.fptrunc(r, vty) if xty.dtype == types.float64
                    else builder.fpext(r, vty) for r in rows]
        _store_columns(context, builder, dty, dd, d0v, ds, _transpose8(builder, rows))
        return context.get_dummy_value()

    return sig, codegen


def _x86_feature(name):
    """Does the code numba generates here use the x86-64 feature ``name`` (as LLVM
    names it)? False on other CPUs, and where NUMBA_CPU_NAME sets a CPU whose features
    are unknown here; NUMBA_CPU_FEATURES overrides the host's."""
    try:
        if not llvm.get_process_triple().startswith("x86_64"):
            return False
        if numba_config.CPU_FEATURES is not None:   # NUMBA_CPU_FEATURES overrides the host
            return "+" + name in numba_config.CPU_FEATURES.split(",")
        if numba_config.CPU_NAME is not None:       # NUMBA_CPU_NAME: features unknown
            return False
        return bool(llvm.get_host_cpu_features().get(name, False))
    except Exception:  # noqa: BLE001  (any doubt: the general code)
        return False


# Does the code convert float32 <-> IEEE binary16 in hardware (x86-64 F16C: vcvtps2ph /
# vcvtph2ps)? Elsewhere LLVM would call a runtime library function that numba does not
# link, so the binary16 step is then not used.
HALF_NATIVE = _x86_feature("f16c")

# Does the CPU add 16 float32 lanes with a rounding direction given in the instruction
# (AVX-512F embedded rounding), which :func:`ro_sums16` uses?
ADD_ROUNDING = _x86_feature("avx512f")


@intrinsic
def round_half(typingctx, x):
    """float32 x rounded to IEEE binary16 (round to nearest even, subnormals, overflow
    to inf, NaN kept) and back to float32: LLVM ``fptrunc`` to ``half`` then ``fpext``,
    the F16C instructions on x86-64 (exact IEEE conversions under the default MXCSR
    rounding, which Python does not change). Only where :data:`HALF_NATIVE`; elsewhere
    it returns x unchanged and must not be used."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        if not HALF_NATIVE:
            return args[0]
        h = builder.fptrunc(args[0], ir.HalfType())
        return builder.fpext(h, ir.FloatType())

    return types.float32(x), codegen


# LLVM's vectorisers use 256-bit vectors on AVX-512 CPUs unless a function asks for more
# (the "prefer-vector-width" function attribute); llvmlite's attribute set accepts only
# the attributes it names, so the string attribute goes in through set.add
_PREFER_512 = '"prefer-vector-width"="512"'


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit vectors where the CPU has
    them (16 float32 lanes per AVX-512 register instead of 8). Generates no code: it
    sets the function attribute, which only changes the vector width the vectorisers
    pick, never what an operation computes; elsewhere the attribute is ignored."""
    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, _PREFER_512)
        return context.get_dummy_value()

    return types.void(), codegen


_RD_SAE, _RU_SAE = 9, 10    # embedded rounding: toward -inf / +inf, exceptions suppressed


@intrinsic
def ro_sums16(typingctx, X, Bv, a, t0, D):
    """Sixteen round-to-odd sums in float32: for u in 0..15, ``D[t0 + u]`` = the exact
    ``X[t0 + u] + a * Bv[t0 + u]`` rounded to odd (itself where float32 holds it, else
    the one of its two float32 neighbours whose last bit is set). The products must be
    exact in float32 (one IEEE multiply). The sum is added twice, rounded down and
    rounded up (AVX-512F embedded rounding, the MXCSR untouched): equal where exact,
    else adjacent floats of which one is odd; an overflow gives the largest finite
    float on one side, so the odd pick is finite there and rounds on to inf. Only where
    :data:`ADD_ROUNDING`; X, Bv, D C-contiguous float32 vectors, t0 + 16 <= their
    lengths (the caller checks)."""
    ok = all(isinstance(v, types.Array) and v.ndim == 1 and v.layout == "C"
             and v.dtype == types.float32 for v in (X, Bv, D))
    if not (ok and a == types.float32):
        return None
    sig = types.void(X, Bv, a, t0, D)

    def codegen(context, builder, signature, args):
        if not ADD_ROUNDING:     # never called then (a branch the caller prunes)
            return context.get_dummy_value()
        x, bv, av, t, d = args
        xty, bty, _, _, dty = signature.args
        f32 = ir.FloatType()
        vty = ir.VectorType(f32, 16)
        ity = ir.VectorType(_I32, 16)

        def ptr(aty, arr):
            data = context.make_array(aty)(context, builder, arr).data
            return builder.bitcast(builder.gep(data, [t]), vty.as_pointer())

        vx = builder.load(ptr(xty, x), align=4)
        vb = builder.load(ptr(bty, bv), align=4)
        va = builder.insert_element(ir.Constant(vty, ir.Undefined), av, ir.Constant(_I32, 0))
        va = builder.shuffle_vector(va, ir.Constant(vty, ir.Undefined),
                                    ir.Constant(ity, [ir.Constant(_I32, 0)] * 16))
        p = builder.fmul(va, vb)
        fnty = ir.FunctionType(vty, [vty, vty, _I32])
        add = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.avx512.add.ps.512")
        rd = builder.call(add, [vx, p, ir.Constant(_I32, _RD_SAE)])
        ru = builder.call(add, [vx, p, ir.Constant(_I32, _RU_SAE)])
        one = ir.Constant(ity, [ir.Constant(_I32, 1)] * 16)
        odd = builder.icmp_unsigned("!=", builder.and_(builder.bitcast(rd, ity), one),
                                    ir.Constant(ity, [ir.Constant(_I32, 0)] * 16))
        builder.store(builder.select(odd, rd, ru), ptr(dty, d), align=4)
        return context.get_dummy_value()

    return sig, codegen
