"""User C models plugged into accsim, and cross-checked against accsim's own model.

A C model is one function with a fixed signature, compiled through cffi (API mode, the
system C compiler)::

    kind="step":  double f(double acc, double a, double b, int *flags);
                  the new register value after adding a*b to acc
    kind="round": double f(double x, int *flags);
                  x rounded to the format

``*flags`` (zeroed before each call) takes the OR of 1 (inexact), 2 (overflow) and
4 (saturate), the event flags of :mod:`accsim.numerics.engine`.

accsim's reference for a step is one rounding of the *exact* ``acc + a*b`` into the
format: :func:`accsim.matmul` on 1x1 products with ``acc`` as the bias (``acc`` is first
rounded into the format, as a register only holds format values). When an input is
infinite or NaN the IEEE float64 value of ``acc + a*b`` (itself infinite or NaN) is
rounded with :func:`accsim.quantize`. The reference for a rounding is ``quantize``.

Compiled models are cached by content in a per-user temporary folder, so compiling the
same source twice costs one import.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import get_args

import numpy as np

from ..numerics.config import load_format
from ..numerics.engine import Events, MatmulResult, matmul
from ..numerics.formats import FloatFormat, Format, rounding_code
from ..numerics.rounding import quantize_flags

KINDS = ("step", "round")
_SIGNATURES = {
    "step": ("double", "(double, double, double, int *)",
             "double {f}(double acc, double a, double b, int *flags)"),
    "round": ("double", "(double, int *)", "double {f}(double x, int *flags)"),
}
FLAG_MASK = 7  # inexact | overflow | saturate

_GLUE = r"""
#line 1 "<accsim glue>"
static double (*const _accsim_sig_check)SIG = {f};
static void _accsim_step_many(const double *acc, const double *a, const double *b,
                              double *out, int *flags, long n)
{{
    long i;
    (void)_accsim_sig_check;
    for (i = 0; i < n; i++) {{ int fl = 0; out[i] = CALL_STEP; flags[i] = fl; }}
}}
static void _accsim_matmul(long m, long k, long n, const double *A, const double *B,
                           const double *init, double *out, int *flags,
                           long long *nov, long long *nsat, long long *ninx)
{{
    long i, j, t;
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {{
            double r = init ? init[i * n + j] : 0.0;
            int any = 0;
            for (t = 0; t < k; t++) {{
                int fl = 0;
                r = STEP_MM;
                any |= fl;
                nov[i] += (fl & 2) != 0; nsat[i] += (fl & 4) != 0; ninx[i] += (fl & 1) != 0;
            }}
            out[i * n + j] = r;
            flags[i * n + j] = any;
        }}
}}
"""


def _glue(function, kind):
    g = _GLUE.replace("SIG", _SIGNATURES[kind][1])
    if kind == "step":
        g = g.replace("CALL_STEP", "{f}(acc[i], a[i], b[i], &fl)")
        g = g.replace("STEP_MM", "{f}(r, A[i * k + t], B[t * n + j], &fl)")
    else:
        g = g.replace("CALL_STEP", "{f}(acc[i], &fl)")
        g = g.replace("STEP_MM", "{f}(r + A[i * k + t] * B[t * n + j], &fl)")
    return g.format(f=function)


@contextlib.contextmanager
def captured_fds():
    """Redirect the process's stdout/stderr file descriptors into a temporary file (the
    compiler is a subprocess writing to them); yields a callable returning the text."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield lambda: (tmp.seek(0), tmp.read().decode("utf-8", "replace"))[1]
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"accsim-cmodel-{os.getuid() if hasattr(os, 'getuid') else 0}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _first_error(transcript, label, function, kind):
    """One line from a compiler transcript: the first error, classified."""
    lines = transcript.splitlines()
    errs = [ln for ln in lines if "error:" in ln]
    sig = _SIGNATURES[kind][2].format(f=function)
    for ln in errs:
        if "<accsim glue>" in ln:
            if "undeclared" in ln:
                return f"{label}: no function {function!r} (expected {sig})"
            return f"{label}: function {function!r} has the wrong signature (expected {sig})"
    if errs:
        msg = errs[0].strip()
        msg = re.sub(r"^.*?:(\d+):(\d+): (?:fatal )?error: ", r"line \1: ", msg)
        return f"{label}: compile error: {msg}"
    tail = next((ln.strip() for ln in reversed(lines) if ln.strip()), "compiler failed")
    return f"{label}: compile error: {tail}"


class CModel:
    """A compiled C model: ``step(acc, a, b)`` or ``round(x)`` -> (value, flags).

    ``ffi`` and ``lib`` are the compiled cffi module's (``lib`` holds the model function
    and the C loops that drive it); ``function``, ``kind`` and ``label`` (the source file,
    or ``<c-model>``) describe it.
    """

    def __init__(self, module, function, kind, label):
        self.ffi = module.ffi
        self.lib = module.lib
        self.function = function
        self.kind = kind
        self.label = label
        self._fn = getattr(module.lib, function)
        self._flag = self.ffi.new("int *")

    def __repr__(self):
        return f"CModel({self.label!r}, function={self.function!r}, kind={self.kind!r})"

    def drive_matmul(self, a, b, init=None):
        """The engine's hook for a register that runs its own loop: ``accsim.matmul(a, b,
        model, bias=init)`` calls this (see :func:`cmodel_matmul`)."""
        return cmodel_matmul(a, b, self, init)

    def step(self, acc, a, b):
        """New register value and event flags after one accumulator step."""
        if self.kind != "step":
            raise ValueError(f"{self.function}: a 'round' model has no step(); use round()")
        f = self._flag
        f[0] = 0
        v = self._fn(float(acc), float(a), float(b), f)
        return v, f[0]

    def round(self, x):
        """``x`` rounded by the model, and the event flags."""
        if self.kind != "round":
            raise ValueError(f"{self.function}: a 'step' model has no round(); use step()")
        f = self._flag
        f[0] = 0
        v = self._fn(float(x), f)
        return v, f[0]

    def _many(self, *arrays):
        arrs = np.broadcast_arrays(*[np.asarray(x, dtype=np.float64) for x in arrays])
        shape = arrs[0].shape
        flat = [np.ascontiguousarray(x).reshape(-1) for x in arrs]
        n = flat[0].shape[0]
        out = np.empty(n)
        flags = np.zeros(n, dtype=np.intc)
        ffi = self.ffi
        ptr = [ffi.cast("const double *", ffi.from_buffer(x)) for x in flat]
        if len(ptr) == 1:
            ptr = ptr * 3
        self.lib._accsim_step_many(*ptr, ffi.cast("double *", ffi.from_buffer(out)),
                                    ffi.cast("int *", ffi.from_buffer(flags)), n)
        return out.reshape(shape), flags.reshape(shape)

    def step_many(self, acc, a, b):
        """Vectorised :meth:`step` (one C loop): (values, flags) arrays."""
        if self.kind != "step":
            raise ValueError(f"{self.function}: a 'round' model has no step_many()")
        return self._many(acc, a, b)

    def round_many(self, x):
        """Vectorised :meth:`round` (one C loop): (values, flags) arrays."""
        if self.kind != "round":
            raise ValueError(f"{self.function}: a 'step' model has no round_many()")
        return self._many(x)


def compile_c_model(source_or_path, function, kind="step") -> CModel:
    """Compile a C model function through cffi.

    Parameters
    ----------
    source_or_path : str or Path
        C source text, or the path of a ``.c`` file (a Path, or a string naming an
        existing file).
    function : str
        The function to call (see the module docstring for the signatures).
    kind : "step" | "round"

    A compile error, a missing function or a wrong signature raises one ``ValueError``
    line (the compiler transcript is not printed).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(function, str) or not re.fullmatch(r"[A-Za-z_]\w*", function):
        raise ValueError(f"function: expected a C identifier, got {function!r}")
    if isinstance(source_or_path, Path) or (
            isinstance(source_or_path, str) and "\n" not in source_or_path
            and (source_or_path.endswith((".c", ".h")) or os.path.isfile(source_or_path))):
        path = Path(source_or_path)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read ({exc.__class__.__name__})") from None
        label = str(path)
    elif isinstance(source_or_path, str):
        source, label = source_or_path, "<c-model>"
    else:
        raise ValueError(f"source_or_path: expected C source or a path, got {source_or_path!r}")
    if function.startswith("_accsim"):
        raise ValueError(f"function: names starting with _accsim are reserved, got {function!r}")

    full = f'#line 1 "{label}"\n{source}\n{_glue(function, kind)}'
    digest = hashlib.sha256(
        f"{full}\0{function}\0{kind}\0{sys.version}".encode()).hexdigest()[:20]
    modname = f"_accsim_cmodel_{digest}"
    cache = _cache_dir()
    built = sorted(cache.glob(f"{modname}*.so")) + sorted(cache.glob(f"{modname}*.pyd"))
    if not built:
        built = [_build(full, modname, function, kind, cache, label)]
    return CModel(_import(modname, built[0], label), function, kind, label)


def _build(full, modname, function, kind, cache, label):
    import cffi
    ffi = cffi.FFI()
    ret, args, _ = _SIGNATURES[kind]
    ffi.cdef(f"{ret} {function}{args};\n"
             "void _accsim_step_many(const double *, const double *, const double *, "
             "double *, int *, long);\n"
             "void _accsim_matmul(long, long, long, const double *, const double *, "
             "const double *, double *, int *, long long *, long long *, long long *);")
    ffi.set_source(modname, full, extra_compile_args=[
        "-O2", "-Werror=incompatible-pointer-types", "-Werror=implicit-function-declaration",
        "-fdiagnostics-color=never", "-ffp-contract=off"])
    work = tempfile.mkdtemp(prefix="build-", dir=cache)
    old_lc = os.environ.get("LC_ALL")
    os.environ["LC_ALL"] = "C"  # plain ASCII quotes in compiler messages
    with captured_fds() as text:
        try:
            so = ffi.compile(tmpdir=work, verbose=False)
            err = None
        except Exception as exc:  # noqa: BLE001 - cffi raises several kinds
            so, err = None, exc
        transcript = text()
    if old_lc is None:
        del os.environ["LC_ALL"]
    else:
        os.environ["LC_ALL"] = old_lc
    if err is not None:
        raise ValueError(_first_error(transcript + "\n" + str(err), label, function, kind)) from None
    so = Path(so)
    dest = cache / so.name
    os.replace(so, dest)
    return dest


def _import(modname, path, label):
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except ImportError as exc:
        msg = str(exc).splitlines()[0]
        with contextlib.suppress(OSError):
            os.remove(path)
        m = re.search(r"undefined symbol: (\w+)", msg)
        if m:
            raise ValueError(f"{label}: {m.group(1)!r} is declared but never defined") from None
        raise ValueError(f"{label}: the compiled C model cannot be loaded ({msg})") from None
    sys.modules[modname] = mod
    return mod


# ---------------------------------------------------------------------------------------
# accsim's reference model

def _resolve(fmt):
    if isinstance(fmt, get_args(Format)):
        return fmt
    return load_format(fmt)


def reference_round(x, fmt, rounding="rne"):
    """accsim's rounding of ``x`` (1-D): (values, flags, valid) — ``valid`` is False
    where accsim refuses the input (NaN without NaN, a result beyond 53 bits)."""
    out, fl, valid = quantize_flags(x, _resolve(fmt), rounding)
    return out, fl.astype(np.intc), valid


def reference_step(acc, a, b, fmt, rounding="rne", block=256):
    """accsim's accumulator step round(acc + a*b) (one rounding of the exact value) for
    1-D arrays: (values, flags, valid)."""
    fmt = _resolve(fmt)
    if rounding == "sr":
        raise ValueError("rounding: stochastic rounding has no single reference value")
    rounding_code(rounding)
    acc, a, b = (np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
                 for x in np.broadcast_arrays(acc, a, b))
    n = acc.shape[0]
    out = np.full(n, np.nan)
    flags = np.zeros(n, dtype=np.intc)
    valid = np.ones(n, dtype=bool)
    fin = np.isfinite(acc) & np.isfinite(a) & np.isfinite(b)
    idx = np.flatnonzero(fin)

    def run(sub):
        k = sub.shape[0]
        ar = np.arange(k)
        bias = np.zeros((k, k))
        bias[ar, ar] = acc[sub]
        r = matmul(a[sub][:, None], b[sub][None, :], fmt, rounding=rounding, bias=bias,
                   select=(ar, ar))
        out[sub] = r.values[ar, ar]
        flags[sub] = r.events.flags[ar, ar]

    for s in range(0, idx.shape[0], block):
        sub = idx[s:s + block]
        try:
            run(sub)
        except ValueError:
            for i in sub:  # one case at a time: the block's operands may not mix
                try:
                    run(np.array([i]))
                except ValueError:
                    valid[i] = False
    rest = np.flatnonzero(~fin)
    if rest.size:
        with np.errstate(all="ignore"):
            x = acc[rest] + a[rest] * b[rest]
        out[rest], flags[rest], valid[rest] = quantize_flags(x, fmt, rounding)
    return out, flags, valid


# ---------------------------------------------------------------------------------------
# cases

def _ulp(v, fmt):
    """Spacing of ``fmt`` at the (finite) format value v."""
    if v == 0 or abs(v) < fmt.min_normal:
        return math.ldexp(1.0, fmt.emin - fmt.man_bits)
    return math.ldexp(1.0, math.frexp(abs(v))[1] - 1 - fmt.man_bits)


def _anchors(fmt):
    """Format values where rounding is delicate."""
    mn, mx = fmt.min_normal, fmt.max_finite
    sub = math.ldexp(1.0, fmt.emin - fmt.man_bits)
    v = [0.0, 1.0, 1.0 + _ulp(1.0, fmt), 3.0 * 0.5, mn, mn + _ulp(mn, fmt), mx,
         mx - _ulp(mx, fmt), math.ldexp(1.0, fmt.emax), math.ldexp(1.0, fmt.emax) - _ulp(mx, fmt) / 2]
    if fmt.subnormals:
        v += [sub, 2 * sub, 3 * sub, mn - sub]
    out = []
    for x in v:
        q = float(quantize_flags(np.array([x]), fmt, "rz")[0][0])
        if math.isfinite(q):
            out += [q, -q]
    return sorted(set(out), key=lambda t: (abs(t), t))


def step_cases(fmt, cases=2000, seed=0):
    """Adversarial and random (acc, a, b) triples for a float accumulator ``fmt``.

    Adversarial: for anchors v (zero, one, the subnormal boundary, the overflow
    threshold, ...), products that put ``acc + a*b`` exactly on a tie, one small step
    either side of it, and at quarter ulps; the overflow threshold; signed zeros; inf and
    NaN in every position (the adversarial ``b`` are powers of two, ``a`` has at most 47
    significant bits). Random: format-valued acc with products of 24-bit operands over
    the format's exponent range, and near-cancellations. Every product is exact in
    float64.
    """
    fmt = _resolve(fmt)
    if not isinstance(fmt, FloatFormat):
        raise ValueError("format: step cross-checks support floating-point accumulators")
    rng = np.random.default_rng(seed)
    acc, a, b = [], [], []

    def add(x, y, z):
        acc.append(x)
        a.append(y)
        b.append(z)

    anchors = _anchors(fmt)
    for v in anchors:
        u = _ulp(v, fmt)
        for d in (u / 2, u / 4, 3 * u / 4, u, 2 * u):
            # ± a hair inside float64 (2^-20) and below it after the add (2^-45: the
            # exact sum then needs more than 53 bits, which catches double rounding)
            for off in (0.0, d * 2.0**-20, -d * 2.0**-20, d * 2.0**-45, -d * 2.0**-45):
                for s in (1.0, -1.0):
                    p = s * (d + off)
                    for bb in (1.0, 0.5, 2.0):
                        add(v, p / bb, bb)
        # below the smallest step: ulp/2 of the subnormal spacing, ± a hair
        lo = math.ldexp(1.0, fmt.emin - fmt.man_bits - 1)
        add(v, lo * (1 + 2.0**-20), 1.0)
        add(v, -lo * (1 - 2.0**-20), 1.0)
    z = [0.0, -0.0]
    for x in z:
        for y in z:
            for w in (1.0, -1.0, 0.0, -0.0):
                add(x, y, w)
    specials = [math.inf, -math.inf, math.nan]
    for s in specials:
        add(s, 1.0, 1.0)
        add(1.0, s, 1.0)
        add(1.0, 2.0, s)
        add(0.0, s, 0.0)
    add(math.inf, math.inf, -1.0)
    add(-math.inf, math.inf, 1.0)
    adv = len(acc)
    nrand = max(0, cases - adv) if cases > adv else max(cases // 4, 0)
    if nrand:
        lo_e = max(fmt.emin - fmt.man_bits, -400)
        hi_e = min(fmt.emax, 400)
        mags = np.ldexp(rng.uniform(1, 2, nrand), rng.integers(lo_e, hi_e + 1, nrand))
        acc_r = quantize_flags(mags * rng.choice([-1.0, 1.0], nrand), fmt, "rne")[0]
        acc_r = np.where(np.isfinite(acc_r), acc_r, fmt.max_finite)
        op = FloatFormat(11, 23)
        ea = rng.integers(lo_e // 2 - 2, hi_e // 2 + 1, nrand)
        eb = rng.integers(lo_e // 2 - 2, hi_e // 2 + 1, nrand)
        ra = quantize_flags(np.ldexp(rng.standard_normal(nrand), ea), op, "rne")[0]
        rb = quantize_flags(np.ldexp(rng.standard_normal(nrand), eb), op, "rne")[0]
        # a third of the cases: acc near -a*b (cancellation)
        canc = rng.random(nrand) < 0.33
        near = quantize_flags(-(ra * rb), fmt, "rne")[0]
        acc_r = np.where(canc & np.isfinite(near), near, acc_r)
        acc += acc_r.tolist()
        a += ra.tolist()
        b += rb.tolist()
    return np.array(acc), np.array(a), np.array(b)


def round_cases(fmt, cases=2000, seed=0):
    """Adversarial and random inputs for a rounding model of ``fmt``: ties, ties ± one
    float64 step, quarter ulps around the anchors (subnormal boundary, overflow
    threshold), signed zeros, infinities, NaN; then random values over the range."""
    fmt = _resolve(fmt)
    rng = np.random.default_rng(seed)
    xs = []
    if isinstance(fmt, FloatFormat):
        for v in _anchors(fmt):
            u = _ulp(v, fmt)
            for d in (u / 2, u / 4, 3 * u / 4, u):
                for s in (1.0, -1.0):
                    t = v + s * d
                    xs += [t, math.nextafter(t, math.inf), math.nextafter(t, -math.inf)]
        lo_e = fmt.emin - fmt.man_bits - 2
        hi_e = fmt.emax + 1
    else:
        r = fmt.resolution
        for k in (0, 1, 2, 3, fmt.max_int, fmt.min_int, fmt.max_int - 1):
            for d in (0.0, r / 2, -r / 2, r / 4, 3 * r / 4):
                t = k * r + d
                xs += [t, math.nextafter(t, math.inf), math.nextafter(t, -math.inf)]
        lo_e = -fmt.frac_bits - 2
        hi_e = fmt.bits - fmt.frac_bits + 1
    xs += [0.0, -0.0, math.inf, -math.inf, math.nan]
    adv = len(xs)
    nrand = max(cases - adv, cases // 4)
    mags = np.ldexp(rng.uniform(1, 2, nrand), rng.integers(lo_e, hi_e + 1, nrand))
    xs += (mags * rng.choice([-1.0, 1.0], nrand)).tolist()
    return np.array(xs)


# ---------------------------------------------------------------------------------------
# cross-check

class CrosscheckResult:
    """Outcome of :func:`crosscheck`: ``cases`` compared, ``mismatches``, ``skipped``
    (inputs accsim refuses), and ``first`` — a dict describing the first differing
    case (inputs, both values and both flags), or None."""

    def __init__(self, cases, mismatches, skipped, first, kind):
        self.cases = cases
        self.mismatches = mismatches
        self.skipped = skipped
        self.first = first
        self.kind = kind

    def __repr__(self):
        return (f"CrosscheckResult(cases={self.cases}, mismatches={self.mismatches}, "
                f"skipped={self.skipped})")


def _same(x, y):
    """Bitwise equality of float64 arrays, any NaN equal to any NaN."""
    xb = x.view(np.uint64)
    yb = y.view(np.uint64)
    return (xb == yb) | (np.isnan(x) & np.isnan(y))


def crosscheck(model, fmt, rounding="rne", cases=2000, seed=0, check_flags=True):
    """Drive the C ``model`` and accsim's model over adversarial and random cases.

    Values are compared bit for bit (any NaN matches any NaN); flags (masked to
    inexact | overflow | saturate) are compared when ``check_flags`` and all inputs are
    finite. Returns a :class:`CrosscheckResult`.
    """
    if not isinstance(model, CModel):
        raise ValueError(f"model: expected a CModel from compile_c_model, got {model!r}")
    fmt = _resolve(fmt)
    if rounding == "sr":
        raise ValueError("rounding: stochastic rounding has no single reference value")
    rounding_code(rounding)
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ValueError(f"cases: expected a positive integer, got {cases!r}")
    if model.kind == "step":
        acc, a, b = step_cases(fmt, cases, seed)
        ref, rfl, valid = reference_step(acc, a, b, fmt, rounding)
        got, gfl = model.step_many(acc, a, b)
        inputs = np.stack([acc, a, b], axis=1)
        names = ("acc", "a", "b")
        finite = np.isfinite(acc) & np.isfinite(a) & np.isfinite(b)
    else:
        x = round_cases(fmt, cases, seed)
        ref, rfl, valid = reference_round(x, fmt, rounding)
        got, gfl = model.round_many(x)
        inputs = x[:, None]
        names = ("x",)
        finite = np.isfinite(x)
    same = _same(got, ref)
    if check_flags:
        same &= ~finite | ((gfl & FLAG_MASK) == rfl)
    bad = valid & ~same
    nbad = int(bad.sum())
    first = None
    if nbad:
        i = int(np.flatnonzero(bad)[0])
        first = {**{nm: float(v) for nm, v in zip(names, inputs[i])},
                 "expected": float(ref[i]), "expected_flags": int(rfl[i]),
                 "got": float(got[i]), "got_flags": int(gfl[i] & FLAG_MASK)}
    return CrosscheckResult(int(valid.sum()), nbad, int((~valid).sum()), first, model.kind)


# ---------------------------------------------------------------------------------------
# a C step function as the accumulator of a matrix product

def cmodel_matmul(a, b, model, init=None):
    """C = a @ b with the C ``model`` as the accumulator register.

    Every output's register starts at ``init[i, j]`` (broadcast; default 0) and takes,
    for k = 0 .. K-1, ``model.step(r, a[i, k], b[k, j])`` — the same sequential order as
    ``accsim.matmul(structure="sequential")``. A ``round`` model is driven with
    ``round(r + a*b)`` in float64 (two roundings: only exact when float64 is). Returns
    an :class:`accsim.MatmulResult` whose events count the model's flags.
    """
    if not isinstance(model, CModel):
        raise ValueError(f"model: expected a CModel from compile_c_model, got {model!r}")
    A = np.ascontiguousarray(a, dtype=np.float64)
    B = np.ascontiguousarray(b, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(f"a, b: expected 2-D arrays, got shapes {A.shape} and {B.shape}")
    m, k = A.shape
    if B.shape[0] != k:
        raise ValueError(f"b: expected {k} rows to match a's {k} columns, got shape {B.shape}")
    n = B.shape[1]
    ffi = model.ffi
    if init is None:
        ip = ffi.NULL
    else:
        try:
            I = np.ascontiguousarray(np.broadcast_to(np.asarray(init, dtype=np.float64), (m, n)))
        except ValueError:
            raise ValueError(f"init: expected an array broadcastable to ({m}, {n})") from None
        ip = ffi.cast("const double *", ffi.from_buffer(I))
    out = np.empty((m, n))
    flags = np.zeros((m, n), dtype=np.intc)
    nov, nsat, ninx = (np.zeros(m, dtype=np.int64) for _ in range(3))

    def p(x, t):
        return ffi.cast(t, ffi.from_buffer(x))
    model.lib._accsim_matmul(m, k, n, p(A, "const double *"), p(B, "const double *"), ip,
                              p(out, "double *"), p(flags, "int *"), p(nov, "long long *"),
                              p(nsat, "long long *"), p(ninx, "long long *"))
    ev = Events(nov, nsat, ninx, (flags & FLAG_MASK).astype(np.uint8))
    return MatmulResult(out, ev)
