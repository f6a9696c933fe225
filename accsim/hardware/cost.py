"""Cost model: energy, area and cycles of an accelerator's narrow and wide datapaths.

The model prices *counts* (MACs, estimator actions, operand re-fetches); it never runs
kernels and imports neither the engine nor the network layer.

Technology tables
-----------------
A ``kind: technology`` YAML document (built-ins in ``formats/technology/``) lists
primitives with their energy per operation (``energy_pj``) and area (``area_um2``)::

    kind: technology
    version: 1
    name: my-28nm                  # optional, default: the file name
    description: ...
    node_nm: 28                    # optional
    primitives:
      int8_add: {energy_pj: 0.02, area_um2: 20, status: published, source: "synthesis"}
      fp32_mul: {...}
      register_bit: {...}          # one bit of register, per write
      sram_read_32b: {energy_pj: 5, status: published, source: ...}   # area optional

Primitive names: ``intN_add``, ``intN_mul`` (N-bit integer adder / N x N multiplier),
``<float>_add``, ``<float>_mul`` with ``<float>`` one of fp16, fp32, fp64, bf16, tf32 or
``eXmY``; ``register_bit``; memory entries ``sram_*`` / ``dram_*`` (energy only).
``sram_read_32b`` is what operand re-fetch from a buffer costs. Every entry says where
it comes from (``source``) and whether it is ``published`` or ``derived``.

Scaling rules (every rule goes exactly through the table's anchors)
-------------------------------------------------------------------
Each arithmetic kind is priced from its anchors as a function of one *size*:

* integer adders: size = width w; piecewise linear between anchors, proportional to w
  beyond them (ripple/prefix adders and registers are linear in width: Horowitz 2014,
  int8/16/32 add ≈ 0.03/0.05/0.1 pJ; REFERENCE.md sec. 4);
* registers: ``register_bit`` x bits (Accelergy's per-bit register model);
* integer multipliers: size = a*b (product of operand widths; an array multiplier has a*b
  partial-product cells, Horowitz int8->int32 is 15.5x energy for 16x the cells);
  piecewise power law (log-log linear) between anchors;
* FP multipliers: size = pa*pb, the product of the significand widths p = man_bits + 1
  (fp16->fp32 area 4.7x vs (24/11)^2 = 4.76x); piecewise power law;
* FP adders: size S(e, p) = p*log2(p) + e: the alignment and normalisation shifters are
  p-bit barrel shifters of log2(p) stages (p*log2(p) muxes), leading-zero count and
  rounding scale the same way, and the exponent compare/subtract is an e-bit adder.
  Piecewise power law between anchors: with the fp16 (S = 43.05) and fp32 (S = 118.04)
  anchors of Horowitz this is E = 0.4 pJ * (S/43.05)^0.804 and
  A = 1360 um2 * (S/43.05)^1.114, exactly through both anchors. (A fit
  a + b*p*log2(p) + c*e through the same two points gives a negative constant or a
  negative exponent term for the areas, i.e. not monotone, hence the power law.)

Power-law pieces extrapolate beyond the outer anchors with the exponent of the nearest
segment (exponent 1 when a kind has a single anchor); linear pieces extrapolate in
proportion to width. Anchors must not decrease with size (checked on load), so every rule
is monotone in width.

Per-MAC cost
------------
``mac_cost(acc, tech, "narrow")``:

* multiplier for the operand formats (integer x integer: ``int_mul``; otherwise
  ``fp_mul`` with significand widths, an integer operand counting its bits);
* adder of the accumulator format (``int_add`` at its bits, or ``fp_add``);
* register of the accumulator format, written once per add (bits x ``register_bit``);
* the accumulation structure:

  - ``sequential`` and ``tree``: nothing more (a pairwise tree does n-1 adds for n terms,
    like a sequential accumulator);
  - ``chunked`` (chunk L): a wide add plus a wide register write every L terms, amortised
    (energy / L); area adds one wide adder and register per processing element;
  - ``fused`` (T terms, g guard bits): one step takes T multipliers and a (T+1)-input
    aligned adder, priced as T integer adders of the aligned width
    p + g + 1 + ceil(log2(T+1)) plus ONE adder of the accumulator format (exponent
    compare, alignment, normalisation and rounding done once) and one register write;
    per MAC the adder part is divided by T. The T alignment shifters are not priced
    separately (Horowitz gives no split of an FP adder), so this is a lower bound.

``mac_cost(acc, tech, "wide")`` is a sequential MAC into the wide format: re-issued
outputs and the all-wide baseline use it.

Mixed precision (``price_run``)
-------------------------------
For a GEMM of m x n outputs and k terms (operands A m x k, weights B k x n):

* narrow MACs: m*n*k narrow MACs (every output goes through the narrow datapath);
* wide MACs: r*k for r re-issued outputs;
* estimator (per-term action counts x energy, plus a per-output test):

  - ``none``: free (no test; e.g. a narrow accumulator's overflow flag, or a static
    choice);
  - ``exact``: |W||x| with one extra narrow sequential MAC per term (m*n*k);
  - ``norm``: ||w_i||*||x|| with weight norms precomputed: the input norms cost one narrow
    MAC per input element (m*k, x*x accumulated in the narrow format);
  - ``exponent``: log-domain sum of exponents, two integer adds of the exponent width
    (+1) per term (m*n*k); an integer operand's "exponent" is its leading-one position,
    ceil(log2(bits)) bits;

  every estimator except ``none`` adds a per-output test (one multiply and one add in the
  narrow accumulator's format: tau*|z| against the bound);
* re-fetch of the operands of each re-issued output: ``buffer``: k*(input bits + weight
  bits)/32 reads of ``sram_read_32b``; ``pe``: the operands are still in PE registers and
  are read again, k*(input bits + weight bits) x ``register_bit`` (this reproduces the
  ≈26 % break-even of REFERENCE.md sec. 4); ``none``: free.

The baseline is every output on the wide MAC (m*n*k wide MACs, no estimator, no
re-issues). ``energy_savings = 1 - energy / baseline``.

Ladders (``price_run(..., ladder=[f0, f1, ..., fR-1])``): rung 0 replaces the narrow
accumulator and the last rung the wide one (so the baseline is every MAC on the widest
rung); a layer may carry ``levels``, its component count per rung (summing to m*n;
without it, ``[m*n - recomputed, 0, ..., recomputed]``). Dynamic (multi-level): every
output runs on the narrow datapath, the estimator is charged as above, and the c_r
outputs of rung r >= 1 add c_r*k sequential MACs into rung r's format plus their
re-fetch (``rung_macs_pj`` per rung r >= 1; ``wide_macs_pj`` is their sum). Static
(``static=True``, per-neuron rungs fixed offline): an output runs on its rung only, so
the narrow MACs are c_0*k, there is no estimator and no re-fetch. Area: the narrow array
plus one column of ``rows`` MACs per rung r >= 1. Cycles as above (re-issues of every
rung r >= 1 counted on the extra columns, conservatively serialised).

Array and cycles
----------------
The narrow array is rows x cols PEs; re-issues run on a column of ``rows`` wide MACs (one
per array row), each re-issued output taking k cycles on one of them, so re-issues add
ceil(r / rows) * k cycles. Area = rows*cols narrow MACs + rows wide MACs; the baseline
area is rows*cols wide MACs. GEMM cycles follow SCALE-Sim's analytical model (Samajdar et
al., "A systematic methodology for characterizing scalability of DNN accelerators using
SCALE-Sim", ISPASS 2020): the operand matrix S_R x S_C is mapped on the R x C array in
ceil(S_R/R)*ceil(S_C/C) folds of 2R + C + T - 2 cycles each, where for output-stationary
(os) S_R = m, S_C = n, T = k; weight-stationary (ws) S_R = k, S_C = n, T = m;
input-stationary (is) S_R = k, S_C = m, T = n.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..numerics.config import ConfigError, Doc, builtin_files, header, read_yaml
from ..numerics.formats import FloatFormat

ESTIMATORS = ("none", "exact", "norm", "exponent")
REFETCH = ("buffer", "pe", "none")
OPS = ("int_add", "int_mul", "fp_add", "fp_mul")

# float names usable in primitive keys and op specs: name -> (exp_bits, man_bits)
_FLOAT_NAMES = {"fp16": (5, 10), "fp32": (8, 23), "fp64": (11, 52), "bf16": (8, 7),
                "tf32": (8, 10)}
_ARITH_KEY = re.compile(r"^(int(\d+)|fp16|fp32|fp64|bf16|tf32|e(\d+)m(\d+))_(add|mul)$")
_MEMORY_KEY = re.compile(r"^(sram|dram)_[a-z0-9_]+$")
STATUSES = ("published", "derived")


# ---------------------------------------------------------------------------------------
# values

@dataclass(frozen=True)
class Cost:
    """Energy per operation (pJ) and area (um2) of one hardware unit."""

    energy_pj: float
    area_um2: float

    def __add__(self, other):
        return Cost(self.energy_pj + other.energy_pj, self.area_um2 + other.area_um2)

    def scale(self, energy=1.0, area=1.0):
        return Cost(self.energy_pj * energy, self.area_um2 * area)

    def as_dict(self):
        return {"energy_pj": self.energy_pj, "area_um2": self.area_um2}


ZERO = Cost(0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    """One row of a technology table."""

    name: str
    energy_pj: float
    area_um2: Optional[float]
    status: str
    source: str


@dataclass(frozen=True)
class Technology:
    """A technology table: primitives by name, plus where the table came from."""

    name: str
    primitives: dict
    description: Optional[str] = None
    node_nm: Optional[float] = None
    path: Optional[str] = field(default=None, compare=False)
    _anchors: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self):
        return f"technology '{self.name}'" + (f" ({self.path})" if self.path else "")

    def primitive(self, key, need=None) -> Primitive:
        """The entry ``key``, or a one-line error naming the table and the entry."""
        p = self.primitives.get(key)
        if p is None:
            why = f" (needed {need})" if need else ""
            raise ConfigError(f"{self.label}: no entry 'primitives.{key}'{why}")
        return p

    def describe(self) -> dict:
        d = {"kind": "technology", "version": 1, "name": self.name}
        if self.description:
            d["description"] = self.description
        if self.node_nm is not None:
            d["node_nm"] = self.node_nm
        prims = {}
        for k, p in self.primitives.items():
            e = {"energy_pj": p.energy_pj}
            if p.area_um2 is not None:
                e["area_um2"] = p.area_um2
            e.update(status=p.status, source=p.source)
            prims[k] = e
        d["primitives"] = prims
        return d


# ---------------------------------------------------------------------------------------
# loading

def _fp_size_add(e, p):
    return p * math.log2(p) + e


def _size(kind, spec):
    """Scaling size of an op: see the module docstring."""
    if kind == "int_add":
        return float(spec[0])
    if kind == "int_mul":
        return float(spec[0] * spec[1])
    if kind == "fp_mul":
        return float(spec[0] * spec[1])
    e, p = spec
    return _fp_size_add(e, p)


def _parse_key(key):
    """``int8_add`` -> ("int_add", (8,)); ``fp16_mul`` -> ("fp_mul", (11, 11)); etc."""
    m = _ARITH_KEY.match(key)
    if not m:
        return None
    op = m.group(5)
    if m.group(2) is not None:
        bits = int(m.group(2))
        return (f"int_{op}", (bits,) if op == "add" else (bits, bits))
    if m.group(3) is not None:
        e, man = int(m.group(3)), int(m.group(4))
    else:
        e, man = _FLOAT_NAMES[m.group(1)]
    p = man + 1
    return (f"fp_{op}", (e, p) if op == "add" else (p, p))


def _nonneg(v):
    return math.isfinite(v) and v >= 0


def _positive(v):
    return math.isfinite(v) and v > 0


def technology_from_doc(doc: Doc, default_name=None, path=None) -> Technology:
    """Build and validate a technology table from a parsed document."""
    header(doc, "technology")
    name = doc.get("name", str, default=default_name or "custom")
    description = doc.get("description", str, default=None)
    node = doc.get("node_nm", (int, float), default=None, check=_positive,
                   expected="a positive number")
    prims_doc = doc.sub("primitives")
    doc.finish()
    prims = {}
    anchors = {k: [] for k in OPS}
    for key in prims_doc.data:
        if not isinstance(key, str):
            raise prims_doc.error(key, "expected a primitive name")
        parsed = _parse_key(key)
        is_mem = bool(_MEMORY_KEY.match(key))
        if parsed is None and not is_mem and key != "register_bit":
            raise prims_doc.error(
                key, "unknown primitive (expected intN_add, intN_mul, fp16/fp32/fp64/bf16/"
                     "tf32/eXmY _add or _mul, register_bit, sram_* or dram_*)")
        sub = prims_doc.sub(key)
        need_pos = parsed is not None
        chk = _positive if need_pos else _nonneg
        what = "a positive number" if need_pos else "a non-negative number"
        energy = float(sub.get("energy_pj", (int, float), check=chk, expected=what))
        area = sub.get("area_um2", (int, float), default=None if is_mem else ..., check=chk,
                       expected=what)
        status = sub.get("status", str, check=lambda s: s in STATUSES,
                         expected="'published' or 'derived'")
        source = sub.get("source", str, check=lambda s: bool(s.strip()),
                         expected="a non-empty string")
        sub.finish()
        prims[key] = Primitive(key, energy, None if area is None else float(area),
                               status, source)
        if parsed is not None:
            kind, spec = parsed
            anchors[kind].append((_size(kind, spec), energy, float(area), key))
    tech = Technology(name=name, primitives=prims, description=description,
                      node_nm=node, path=path)
    for kind, lst in anchors.items():
        lst.sort()
        for (s0, e0, a0, k0), (s1, e1, a1, k1) in zip(lst, lst[1:]):
            if s1 == s0 and (e1, a1) != (e0, a0):
                raise ConfigError(f"{tech.label}: key 'primitives.{k1}': same size as "
                                  f"'{k0}' for the scaling rule but a different cost")
            if e1 < e0 or a1 < a0:
                raise ConfigError(f"{tech.label}: key 'primitives.{k1}': cost is smaller "
                                  f"than that of the narrower '{k0}' (costs must not "
                                  "decrease with width)")
        dedup = []
        for a in lst:
            if not dedup or dedup[-1][0] != a[0]:
                dedup.append(a)
        tech._anchors[kind] = dedup
    return tech


def list_technologies():
    """Names of the built-in technology tables, sorted."""
    return sorted(builtin_files("technology"))


def load_technology(name_or_path) -> Technology:
    """A technology table from a built-in name (``list_technologies()``) or a YAML path."""
    if isinstance(name_or_path, Technology):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise ValueError(f"technology: expected a name or path, got {name_or_path!r}")
    s = str(name_or_path)
    p = Path(s)
    if isinstance(name_or_path, Path) or s.endswith((".yaml", ".yml")) or "/" in s \
            or p.is_file():
        return technology_from_doc(Doc(read_yaml(p), str(p)), default_name=p.stem,
                                   path=str(p))
    files = builtin_files("technology")
    if s in files:
        f = files[s]
        return technology_from_doc(Doc(read_yaml(f), str(f)), default_name=f.stem,
                                   path=str(f))
    raise ValueError(f"technology: unknown technology {s!r} (expected one of "
                     f"{', '.join(files)}, or a YAML path)")


# ---------------------------------------------------------------------------------------
# scaling rules

def _interp(points, x, linear):
    """Piecewise rule through ``points`` [(size, value)], sorted by size; see module doc."""
    if len(points) == 1:
        s0, v0 = points[0]
        return v0 * x / s0
    if linear:
        if x <= points[0][0]:
            return points[0][1] * x / points[0][0]
        if x >= points[-1][0]:
            return points[-1][1] * x / points[-1][0]
        for (s0, v0), (s1, v1) in zip(points, points[1:]):
            if s0 <= x <= s1:
                if x == s1:
                    return v1
                return v0 + (v1 - v0) * (x - s0) / (s1 - s0)
    # power law: log-log linear; outside, the nearest segment's exponent
    if x <= points[0][0]:
        seg = points[0], points[1]
    elif x >= points[-1][0]:
        seg = points[-2], points[-1]
    else:
        for seg in zip(points, points[1:]):
            if seg[0][0] <= x <= seg[1][0]:
                break
    (s0, v0), (s1, v1) = seg
    if x == s0:
        return v0
    if x == s1:
        return v1
    alpha = math.log(v1 / v0) / math.log(s1 / s0)
    return v0 * (x / s0) ** alpha


_WHAT = {"int_add": "integer adder", "int_mul": "integer multiplier",
         "fp_add": "floating-point adder", "fp_mul": "floating-point multiplier"}


def _need_anchor(tech, kind, need):
    pts = tech._anchors.get(kind) or []
    if not pts:
        sfx = "_add" if kind.endswith("add") else "_mul"
        example = ("int8" if kind.startswith("int") else "fp16") + sfx
        why = f", needed {need}" if need else ""
        raise ConfigError(f"{tech.label}: no {_WHAT[kind]} entry (e.g. "
                          f"'primitives.{example}'{why})")
    return pts


def _pos_int(name, v, lo=1, hi=4096):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {v!r}")


def op_cost(tech, op, *widths, need=None) -> Cost:
    """Energy and area of one primitive at any width.

    ``op_cost(tech, "int_add", bits)``, ``op_cost(tech, "int_mul", bits[, bits_b])``,
    ``op_cost(tech, "fp_add", exp_bits, man_bits)``,
    ``op_cost(tech, "fp_mul", exp_bits, man_bits)`` (both operands of that format):
    see the scaling rules in the module docstring.
    """
    tech = load_technology(tech)
    if op not in OPS:
        raise ValueError(f"op: unknown operation {op!r} (expected one of {', '.join(OPS)})")
    if op == "int_add":
        if len(widths) != 1:
            raise ValueError("int_add: expected one width (bits)")
        _pos_int("int_add bits", widths[0])
        spec = (widths[0],)
    elif op == "int_mul":
        if len(widths) not in (1, 2):
            raise ValueError("int_mul: expected one or two widths (bits)")
        for w in widths:
            _pos_int("int_mul bits", w)
        spec = (widths[0], widths[-1])
    else:
        if len(widths) != 2:
            raise ValueError(f"{op}: expected exp_bits and man_bits")
        _pos_int(f"{op} exp_bits", widths[0], 0, 64)
        _pos_int(f"{op} man_bits", widths[1], 0, 4096)
        p = widths[1] + 1
        spec = (widths[0], p) if op == "fp_add" else (p, p)
    return _cost_at(tech, op, spec, need)


def _cost_at(tech, kind, spec, need=None):
    pts = _need_anchor(tech, kind, need)
    x = _size(kind, spec)
    linear = kind == "int_add"
    e = _interp([(s, e) for s, e, _, _ in pts], x, linear)
    a = _interp([(s, a) for s, _, a, _ in pts], x, linear)
    return Cost(e, a)


def register_cost(tech, bits, need=None) -> Cost:
    """A ``bits``-wide register (one write per operation): bits x ``register_bit``."""
    p = load_technology(tech).primitive("register_bit", need)
    return Cost(p.energy_pj * bits, p.area_um2 * bits)


# ---------------------------------------------------------------------------------------
# formats -> primitives

def _is_float(fmt):
    return isinstance(fmt, FloatFormat)


def _sig_width(fmt):
    """Significand width of a format: p = man_bits + 1, or an integer's bits."""
    return fmt.man_bits + 1 if _is_float(fmt) else fmt.bits


def mul_cost(tech, a, b, need=None) -> Cost:
    """Multiplier for operands of formats ``a`` x ``b``."""
    if not _is_float(a) and not _is_float(b):
        return _cost_at(tech, "int_mul", (a.bits, b.bits), need)
    return _cost_at(tech, "fp_mul", (_sig_width(a), _sig_width(b)), need)


def add_cost(tech, fmt, need=None) -> Cost:
    """Adder of an accumulator format."""
    if _is_float(fmt):
        return _cost_at(tech, "fp_add", (fmt.exp_bits, fmt.man_bits + 1), need)
    return _cost_at(tech, "int_add", (fmt.bits,), need)


def _exp_width(fmt):
    if _is_float(fmt):
        return fmt.exp_bits
    return max(1, math.ceil(math.log2(fmt.bits)))


# ---------------------------------------------------------------------------------------
# per-MAC cost

def _acc_label(acc):
    return f"by accelerator '{acc.name}'"


def _seq_mac(acc, tech, fmt, need):
    return (mul_cost(tech, acc.input, acc.weight, need)
            + add_cost(tech, fmt, need) + register_cost(tech, fmt.bits, need))


def mac_cost(accelerator, tech, which="narrow") -> Cost:
    """Energy (pJ per MAC) and area (um2 per PE) of the narrow or wide datapath."""
    acc = accelerator
    tech = load_technology(tech)
    need = _acc_label(acc)
    if which == "wide":
        return _seq_mac(acc, tech, acc.wide, need)
    if which != "narrow":
        raise ValueError(f"which: expected 'narrow' or 'wide', got {which!r}")
    base = _seq_mac(acc, tech, acc.narrow, need)
    if acc.structure == "chunked":
        L = acc.chunk_size
        w = add_cost(tech, acc.wide, need) + register_cost(tech, acc.wide.bits, need)
        return base + Cost(w.energy_pj / L, w.area_um2)
    if acc.structure == "fused":
        T = acc.terms
        fmt = acc.narrow
        mul = mul_cost(tech, acc.input, acc.weight, need)
        p = _sig_width(fmt)
        width = p + (acc.guard_bits or 0) + 1 + math.ceil(math.log2(T + 1))
        step = (op_cost(tech, "int_add", width, need=need).scale(T, T)
                + add_cost(tech, fmt, need) + register_cost(tech, fmt.bits, need))
        return mul + step.scale(1 / T, 1 / T)
    return base


def estimator_costs(accelerator, tech, estimator):
    """(energy per term action, energy per output test, which term count) of an
    estimator; the term count is "mnk" (one per MAC) or "mk" (one per input element)."""
    acc = accelerator
    tech = load_technology(tech)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, "
                         f"got {estimator!r}")
    if estimator == "none":
        return 0.0, 0.0, "mnk"
    need = _acc_label(acc) + f" for the '{estimator}' estimator"
    test = (mul_cost(tech, acc.narrow, acc.narrow, need)
            + add_cost(tech, acc.narrow, need)).energy_pj
    if estimator == "exact":
        return _seq_mac(acc, tech, acc.narrow, need).energy_pj, test, "mnk"
    if estimator == "norm":
        sq = (mul_cost(tech, acc.input, acc.input, need) + add_cost(tech, acc.narrow, need)
              + register_cost(tech, acc.narrow.bits, need))
        return sq.energy_pj, test, "mk"
    w = max(_exp_width(acc.input), _exp_width(acc.weight)) + 1
    return 2 * op_cost(tech, "int_add", w, need=need).energy_pj, test, "mnk"


def refetch_energy_per_term(accelerator, tech, refetch):
    """Energy to bring back the two operands of one term of a re-issued output."""
    acc = accelerator
    tech = load_technology(tech)
    if refetch not in REFETCH:
        raise ValueError(f"refetch: expected one of {', '.join(REFETCH)}, got {refetch!r}")
    bits = acc.input.bits + acc.weight.bits
    if refetch == "none":
        return 0.0
    if refetch == "buffer":
        p = tech.primitive("sram_read_32b", _acc_label(acc) + " to re-fetch operands")
        return bits / 32 * p.energy_pj
    return bits * tech.primitive("register_bit", _acc_label(acc)).energy_pj


# ---------------------------------------------------------------------------------------
# array model

def gemm_cycles(accelerator, m, n, k) -> int:
    """Cycles of an m x n x k GEMM on the array (SCALE-Sim analytical model)."""
    acc = accelerator
    R, C = acc.rows, acc.cols
    if acc.dataflow == "os":
        sr, sc, t = m, n, k
    elif acc.dataflow == "ws":
        sr, sc, t = k, n, m
    else:
        sr, sc, t = k, m, n
    folds = math.ceil(sr / R) * math.ceil(sc / C)
    return folds * (2 * R + C + t - 2)


def array_area(accelerator, tech) -> dict:
    """Area of the narrow array plus the wide column used for re-issues, and of the
    all-wide baseline array."""
    acc = accelerator
    n = mac_cost(acc, tech, "narrow").area_um2
    w = mac_cost(acc, tech, "wide").area_um2
    return {"area_um2": acc.rows * acc.cols * n + acc.rows * w,
            "baseline_area_um2": acc.rows * acc.cols * w}


# ---------------------------------------------------------------------------------------
# mixed precision

def _layer_int(layer, key, i, lo):
    v = layer.get(key) if isinstance(layer, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        name = layer.get("name", i) if isinstance(layer, dict) else i
        raise ValueError(f"layers[{i}] ({name}): '{key}': expected an integer >= {lo}, "
                         f"got {v!r}")
    return v


def action_counts(accelerator, layers, estimator="none"):
    """Action counts of a run: narrow/wide MACs, estimator actions, re-fetched terms."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, "
                         f"got {estimator!r}")
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError("layers: expected a non-empty list of {name, m, n, k, recomputed}")
    out = []
    for i, L in enumerate(layers):
        if not isinstance(L, dict):
            raise ValueError(f"layers[{i}]: expected a mapping with m, n, k, recomputed")
        m, n, k = (_layer_int(L, key, i, 1) for key in ("m", "n", "k"))
        r = _layer_int(L, "recomputed", i, 0) if "recomputed" in L else 0
        if r > m * n:
            raise ValueError(f"layers[{i}] ({L.get('name', i)}): 'recomputed': {r} is more "
                             f"than the {m * n} outputs")
        if estimator == "none":
            terms, tests = 0, 0
        elif estimator == "norm":
            terms, tests = m * k, m * n
        else:
            terms, tests = m * n * k, m * n
        lv = L.get("levels")
        if lv is not None:
            if not isinstance(lv, (list, tuple)) or len(lv) < 2 or any(
                    isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in lv) \
                    or sum(lv) != m * n:
                raise ValueError(f"layers[{i}] ({L.get('name', i)}): 'levels': expected a "
                                 f"list of >= 2 non-negative counts summing to {m * n}, "
                                 f"got {lv!r}")
            if "recomputed" in L and r != m * n - lv[0]:
                raise ValueError(f"layers[{i}] ({L.get('name', i)}): 'recomputed': {r} is "
                                 f"not the {m * n - lv[0]} outputs above rung 0 of 'levels'")
            r = m * n - lv[0]
            lv = [int(c) for c in lv]
        out.append({"name": str(L.get("name", f"layer{i}")), "m": m, "n": n, "k": k,
                    "outputs": m * n, "recomputed": r, "levels": lv,
                    "narrow_macs": m * n * k, "wide_macs": r * k,
                    "estimator_terms": terms, "estimator_tests": tests,
                    "refetch_terms": r * k})
    return out


def energy_table(accelerator, tech, estimator="none", refetch="buffer") -> dict:
    """Energy per action (pJ) for every action of a run."""
    tech = load_technology(tech)
    e_term, e_test, _ = estimator_costs(accelerator, tech, estimator)
    return {"narrow_mac": mac_cost(accelerator, tech, "narrow").energy_pj,
            "wide_mac": mac_cost(accelerator, tech, "wide").energy_pj,
            "estimator_term": e_term, "estimator_test": e_test,
            "refetch_term": refetch_energy_per_term(accelerator, tech, refetch)}


def _ladder_accelerator(acc, ladder):
    """(accelerator with narrow / wide = the ladder's ends, rung formats) or (acc, None)."""
    if ladder is None:
        return acc, None
    from dataclasses import replace

    from ..numerics.config import load_format
    if not isinstance(ladder, (list, tuple)) or len(ladder) < 2:
        raise ValueError(f"ladder: expected a list of at least 2 formats, got {ladder!r}")
    fmts = []
    for i, f in enumerate(ladder):
        try:
            fmts.append(load_format(f))
        except ValueError as exc:
            raise ValueError(f"ladder: rung {i}: {f!r}: {str(exc).splitlines()[0]}") from None
    return replace(acc, narrow=fmts[0], wide=fmts[-1]), fmts


def price_run(accelerator, tech, layers, estimator="none", refetch="buffer", *,
              ladder=None, static=False) -> dict:
    """Energy, area and cycles of a mixed-precision run (see the module docstring).

    ``layers``: a list of ``{"name", "m", "n", "k", "recomputed"}`` (``recomputed``: how
    many of the m*n outputs were re-issued on the wide accumulator), optionally with
    ``levels`` (outputs per ladder rung). ``ladder``: rung formats (or names), cheapest
    first; ``static``: per-neuron rungs fixed offline (no narrow pass, estimator or
    re-fetch for outputs above rung 0; pass ``estimator="none"``).
    """
    acc, fmts = _ladder_accelerator(accelerator, ladder)
    tech = load_technology(tech)
    counts = action_counts(acc, layers, estimator)
    ert = energy_table(acc, tech, estimator, refetch)
    area = array_area(acc, tech)
    R = 2 if fmts is None else len(fmts)
    rung_mac = [ert["narrow_mac"]] + [
        _seq_mac(acc, tech, f, _acc_label(acc)).energy_pj for f in (fmts or [])[1:-1]] \
        + [ert["wide_mac"]]
    if fmts is not None and R > 2:
        extra_area = sum(_seq_mac(acc, tech, f, _acc_label(acc)).area_um2
                         for f in fmts[1:-1])
        area = dict(area)
        area["area_um2"] += acc.rows * extra_area
    tot = {"narrow_macs_pj": 0.0, "wide_macs_pj": 0.0, "estimator_pj": 0.0,
           "refetch_pj": 0.0}
    rung_tot = [0.0] * R
    base_total = 0.0
    cycles = base_cycles = 0
    outputs = recomputed = 0
    per_layer = []
    for c in counts:
        lv = c["levels"]
        if lv is None:
            lv = [c["outputs"] - c["recomputed"]] + [0] * (R - 2) + [c["recomputed"]]
        elif len(lv) != R:
            raise ValueError(f"layers ({c['name']}): 'levels': expected {R} counts (one per "
                             f"rung), got {len(lv)}")
        rung_pj = [lv[q] * c["k"] * rung_mac[q] for q in range(R)]
        narrow_pj = (rung_pj[0] if static else c["narrow_macs"] * ert["narrow_mac"])
        b = {"narrow_macs_pj": narrow_pj,
             "wide_macs_pj": sum(rung_pj[1:]),
             "estimator_pj": c["estimator_terms"] * ert["estimator_term"]
             + c["estimator_tests"] * ert["estimator_test"],
             "refetch_pj": 0.0 if static else c["refetch_terms"] * ert["refetch_term"]}
        base = c["narrow_macs"] * ert["wide_mac"]
        for q in range(1, R):
            rung_tot[q] += rung_pj[q]
        rung_tot[0] += narrow_pj
        g = gemm_cycles(acc, c["m"], c["n"], c["k"])
        extra = math.ceil(c["recomputed"] / acc.rows) * c["k"]
        for key in tot:
            tot[key] += b[key]
        e = sum(b.values())
        base_total += base
        cycles += g + extra
        base_cycles += g
        outputs += c["outputs"]
        recomputed += c["recomputed"]
        per_layer.append({"name": c["name"], "energy_pj": e, "baseline_energy_pj": base,
                          "energy_savings": 1 - e / base, "cycles": g + extra,
                          "recomputed_fraction": c["recomputed"] / c["outputs"],
                          "levels": list(lv), "rung_macs_pj": [narrow_pj] + rung_pj[1:],
                          "breakdown": b})
    energy = sum(tot.values())
    return {"accelerator": acc.name, "technology": tech.name, "estimator": estimator,
            "refetch": refetch, "energy_pj": energy, "baseline_energy_pj": base_total,
            "energy_savings": 1 - energy / base_total, **area, "cycles": cycles,
            "baseline_cycles": base_cycles,
            "seconds": cycles / (acc.clock_ghz * 1e9),
            "recomputed_fraction": recomputed / outputs, "breakdown": tot,
            "rung_macs_pj": rung_tot, "static": bool(static), "layers": per_layer}


def price_simulation(accelerator, tech, result, estimator=None, refetch="buffer") -> dict:
    """Price a :class:`accsim.network.SimulationResult` (the keys ``accsim simulate
    --json`` reports): ``energy_pj``, ``baseline_energy_pj`` (every MAC on the wide
    accumulator), ``energy_savings``, ``area_um2``, ``cycles``, ``breakdown``,
    ``technology``, ``estimator``, ``recomputed_fraction`` and per-layer ``layers``.

    ``estimator``: the κ estimator whose actions are charged; by default the result's
    own when its policy computes an estimate at run time (``condition``,
    ``multi-level``), else ``"none"`` (``static`` computes none at inference).

    ``uniform-wide`` is priced as every output on the wide MAC only (the baseline: no
    narrow pass, no re-fetch). Ladder policies (``multi-level``, ``static``): each rung's
    outputs are priced at that
    rung's MAC (the result's ``ladder_formats``, which replace the accelerator's narrow
    and wide accumulators; the baseline is every MAC on the widest rung); ``static``
    charges no narrow pass and no re-fetch for outputs above rung 0.
    """
    pol = getattr(result, "policy", "uniform-narrow")
    if estimator is None:
        estimator = getattr(result, "estimator", "exact") \
            if pol in ("condition", "multi-level") else "none"
    fmts = list(getattr(result, "ladder_formats", None) or [])
    ladder = fmts if pol in ("multi-level", "static") and fmts else None
    layers = []
    for lr in result.layers:
        d = {"name": lr.name, "m": lr.rows, "n": lr.cols, "k": lr.K,
             "recomputed": lr.recomputed}
        lc = list(getattr(lr, "level_counts", None) or [])
        if ladder is not None and len(lc) == len(ladder) and sum(lc) == lr.rows * lr.cols:
            d["levels"] = lc
        layers.append(d)
    # uniform-wide runs every output on the wide datapath only (no narrow pass, no
    # re-fetch): priced like a static assignment of everything to the wide rung
    p = price_run(accelerator, tech, layers, estimator, refetch, ladder=ladder,
                  static=pol in ("static", "uniform-wide"))
    out = {k: p[k] for k in ("energy_pj", "baseline_energy_pj", "energy_savings",
                             "area_um2", "cycles", "breakdown", "layers", "rung_macs_pj")}
    out["technology"] = p["technology"]
    out["estimator"] = estimator
    out["recomputed_fraction"] = result.recomputed_fraction
    return out


def break_even_fraction(accelerator, tech, k, estimator="none", refetch="buffer", n=None):
    """Re-issued fraction of outputs at which the mixed-precision run saves nothing.

    Per output (k terms), with e_n, e_w the narrow / wide MAC energies, t the estimator
    energy per term action, s its per-output test, r the re-fetch energy per term:
    energy(f) = k*e_n + k_est*t + s + f*k*(e_w + r) and baseline = k*e_w, where k_est = k
    (exact, exponent), k/n (norm: one input norm of k terms shared by the n outputs of a
    row; n defaults to k) or 0 (none). Savings are 0 at
    f* = (k*(e_w - e_n) - k_est*t - s) / (k*(e_w + r)).
    The result may be negative (the scheme never pays) or above 1 (it always pays).
    """
    acc = accelerator
    tech = load_technology(tech)
    _pos_int("k", k, 1, 1 << 40)
    if n is None:
        n = k
    _pos_int("n", n, 1, 1 << 40)
    ert = energy_table(acc, tech, estimator, refetch)
    _, _, per = estimator_costs(acc, tech, estimator)
    k_est = 0 if estimator == "none" else (k / n if per == "mk" else k)
    num = k * (ert["wide_mac"] - ert["narrow_mac"]) - k_est * ert["estimator_term"] \
        - ert["estimator_test"]
    return num / (k * (ert["wide_mac"] + ert["refetch_term"]))


# ---------------------------------------------------------------------------------------
# Accelergy / Timeloop export

def export_accelergy(accelerator, tech, counts, out=None, estimator="none",
                     refetch="buffer") -> dict:
    """Energy reference table (ERT), area reference table (ART) and action counts in the
    Accelergy/Timeloop layout. ``counts`` is a list of layers as for :func:`price_run`.
    Writes YAML to ``out`` when given; returns the document."""
    import yaml
    acc = accelerator
    tech = load_technology(tech)
    ert = energy_table(acc, tech, estimator, refetch)
    c = action_counts(acc, counts, estimator)
    tot = {k: sum(layer[k] for layer in c) for k in
           ("narrow_macs", "wide_macs", "estimator_terms", "estimator_tests",
            "refetch_terms")}
    n_area = mac_cost(acc, tech, "narrow").area_um2
    w_area = mac_cost(acc, tech, "wide").area_um2
    top = f"system.{acc.name}"
    narrow = f"{top}.PE[0..{acc.rows * acc.cols - 1}].narrow_mac"
    wide = f"{top}.wide_column[0..{acc.rows - 1}].wide_mac"
    est = f"{top}.estimator"
    ref = f"{top}.{'buffer' if refetch == 'buffer' else 'operand_regs'}"
    tables = [
        {"name": narrow, "actions": [{"name": "mac_random", "energy": ert["narrow_mac"]}]},
        {"name": wide, "actions": [{"name": "mac_random", "energy": ert["wide_mac"]}]},
        {"name": est, "actions": [{"name": "term", "energy": ert["estimator_term"]},
                                  {"name": "test", "energy": ert["estimator_test"]}]},
        {"name": ref, "actions": [{"name": "refetch_term", "energy": ert["refetch_term"]}]},
    ]
    doc = {
        "ERT": {"version": 0.4, "tables": tables},
        "ART": {"version": 0.4, "tables": [{"name": narrow, "area": n_area},
                                           {"name": wide, "area": w_area}]},
        "action_counts": {"version": 0.4, "local": [
            {"name": narrow, "action_counts": [{"name": "mac_random",
                                                "counts": tot["narrow_macs"]}]},
            {"name": wide, "action_counts": [{"name": "mac_random",
                                              "counts": tot["wide_macs"]}]},
            {"name": est, "action_counts": [{"name": "term", "counts": tot["estimator_terms"]},
                                            {"name": "test",
                                             "counts": tot["estimator_tests"]}]},
            {"name": ref, "action_counts": [{"name": "refetch_term",
                                             "counts": tot["refetch_terms"]}]},
        ]},
        "accsim": {"accelerator": acc.name, "technology": tech.name,
                   "estimator": estimator, "refetch": refetch,
                   "units": {"energy": "pJ", "area": "um^2"}},
    }
    if out is not None:
        Path(out).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return doc


# ---------------------------------------------------------------------------------------
# op specs for the CLI

STANDARD_OPS = ("int8_add", "int16_add", "int32_add", "fp16_add", "fp32_add", "int8_mul",
                "int32_mul", "fp16_mul", "fp32_mul")


def parse_op(spec):
    """``fp_add:e5m7``, ``int_add:12``, ``int_mul:8x16``, ``fp_mul:bf16`` ->
    (key, op, widths)."""
    op, sep, arg = str(spec).partition(":")
    if not sep or op not in OPS or not arg:
        raise ValueError(f"--op: expected OP:WIDTH with OP one of {', '.join(OPS)} "
                         f"(e.g. fp_add:e5m7, int_add:12), got {spec!r}")
    if op.startswith("int"):
        m = re.fullmatch(r"(\d+)(?:x(\d+))?", arg) if op == "int_mul" else \
            re.fullmatch(r"(\d+)()", arg)
        if not m:
            raise ValueError(f"--op {spec}: expected a bit width such as 12"
                             + (" or 8x16" if op == "int_mul" else ""))
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        key = f"int{a}_{op[4:]}" if a == b else f"int{a}x{b}_{op[4:]}"
        return key, op, (a, b) if op == "int_mul" else (a,)
    if arg in _FLOAT_NAMES:
        e, man = _FLOAT_NAMES[arg]
    else:
        m = re.fullmatch(r"e(\d+)m(\d+)", arg)
        if not m:
            raise ValueError(f"--op {spec}: expected eXmY or one of "
                             f"{', '.join(_FLOAT_NAMES)}")
        e, man = int(m.group(1)), int(m.group(2))
    return f"{arg}_{op[3:]}", op, (e, man)


def ops_table(tech, extra=()) -> dict:
    """Every standard primitive plus the asked ones: key -> {energy_pj, area_um2}."""
    tech = load_technology(tech)
    out = {}
    for spec in list(STANDARD_OPS) + list(extra):
        if spec in STANDARD_OPS:
            kind, w = _parse_key(spec)
            c = _cost_at(tech, kind, w)
            key = spec
        else:
            key, op, widths = parse_op(spec)
            c = op_cost(tech, op, *widths)
        out[key] = c.as_dict()
    return out
