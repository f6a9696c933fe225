"""The cost model: energy, area and cycles of an accelerator's narrow and wide datapaths.

The model prices *counts* (MACs, estimator actions, operand re-fetches) with the
primitives of a technology table (:mod:`accsim.hardware.technology`, which also states
the scaling rules); it never runs kernels and imports neither the engine nor the network
layer. Energies are in pJ, areas in um2, widths in bits.

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
    (energy / L), plus moving the narrow partial sum (narrow bits x ``register_bit``)
    when the adder is shared; area adds one wide register per PE and the PE's share of
    the wide adders, which follow the accelerator's ``structure.promotion``: one per PE
    (``per-pe``), ceil(cols/L) per row, ceil(rows/L) per column, or ceil(rows*cols/L)
    outside the array (the default; :func:`promotion_adders`);
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
  - ``output``: the narrow output alone, no extra MACs: one integer compare (an add of
    the narrow format's exponent width + 1) per output;
  - ``flag``: the narrow accumulator's saturation/overflow flag (the ``overflow``
    policy): one flag-bit register write per output; the detection gates in the adder
    are not priced;

  ``exact``, ``norm`` and ``exponent`` add a per-output test (one multiply and one add
  in the narrow accumulator's format: tau*|z| against the bound);
* re-fetch of the operands of each re-issued output: ``buffer``: k*(input bits + weight
  bits)/32 reads of ``sram_read_32b``; ``pe``: the operands are still in PE registers and
  are read again, k*(input bits + weight bits) x ``register_bit`` (for int8 operands
  into an int16 accumulator re-issued to int32 on ``horowitz-45nm``, k = 512, this puts
  the break-even re-issued fraction at ≈26 %, against ≈6 % with ``buffer``);
  ``none``: free. The accelerator YAML's ``pricing.refetch`` chooses (default
  ``buffer``).

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

Views
-----
Every run is priced in three views, each against the same array with the wide
accumulator everywhere (``views``, :data:`VIEWS`):

* ``accumulator``: adders and registers alone (narrow pass, promotion, re-issued
  accumulations on their rungs) plus the estimator's actions -- what "accumulator cost"
  means in published claims of accumulator savings; area: adders and registers;
* ``mac`` (the top-level figures): the whole MAC, multipliers and operand re-fetch
  included;
* ``memory``: ``mac`` plus the SRAM traffic of the GEMM (:func:`sram_bits`, priced at
  ``sram_read_32b`` per 32 bits, reads and writes alike), the same for the run and its
  baseline (no area: the tables give no SRAM area).

Array and cycles
----------------
The narrow array is rows x cols PEs; re-issues run on a column of ``rows`` wide MACs (one
per array row), each re-issued output taking k cycles on one of them, so re-issues add
ceil(r / rows) * k cycles. Area = rows*cols narrow MACs (promotion share included) +
rows wide MACs; the baseline area is rows*cols wide MACs. GEMM cycles follow SCALE-Sim's analytical model (Samajdar et
al., "A systematic methodology for characterizing scalability of DNN accelerators using
SCALE-Sim", ISPASS 2020): the operand matrix S_R x S_C is mapped on the R x C array in
ceil(S_R/R)*ceil(S_C/C) folds of 2R + C + T - 2 cycles each, where for output-stationary
(os) S_R = m, S_C = n, T = k; weight-stationary (ws) S_R = k, S_C = n, T = m;
input-stationary (is) S_R = k, S_C = m, T = n.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from ..numerics.config import load_format
from ..numerics.formats import FloatFormat
from .options import ESTIMATOR_HARDWARE, REFETCH
from .technology import FLOAT_NAMES, OPS, Cost, load_technology, parse_primitive_key

ESTIMATORS = tuple(ESTIMATOR_HARDWARE)
"""How the re-issue decision is made in hardware (see "Mixed precision" above)."""
REFETCH_TEXT = {"buffer": "operands of a re-issued output read again from the SRAM "
                          "buffer (sram_read_32b per 32 bits)",
                "pe": "operands of a re-issued output still in PE registers (register_bit "
                      "per bit read)",
                "none": "re-fetching a re-issued output's operands is free"}
"""What each :data:`REFETCH` choice assumes, in words."""
VIEWS = ("accumulator", "mac", "memory")
"""The three views of a run's energy and area (see "Views" above)."""
VIEW_TEXT = {"accumulator": "adders + registers (promotion and estimator included)",
             "mac": "whole MAC: multipliers too, and operand re-fetch",
             "memory": "whole MAC + SRAM operand reads and output writes"}
"""What each of :data:`VIEWS` counts, in words."""
STANDARD_OPS = ("int8_add", "int16_add", "int32_add", "fp16_add", "fp32_add", "int8_mul",
                "int32_mul", "fp16_mul", "fp32_mul")
"""The primitives :func:`ops_table` always lists."""


# ---------------------------------------------------------------------------------------
# primitives at any width

def _pos_int(name, v, lo=1, hi=4096):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {v!r}")


def op_cost(tech, op, *widths, need=None) -> Cost:
    """Energy and area of one primitive at any width.

    ``op_cost(tech, "int_add", bits)``, ``op_cost(tech, "int_mul", bits[, bits_b])``,
    ``op_cost(tech, "fp_add", exp_bits, man_bits)``,
    ``op_cost(tech, "fp_mul", exp_bits, man_bits)`` (both operands of that format):
    see the scaling rules in :mod:`accsim.hardware.technology`.
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
    return tech.cost_at(op, spec, need)


def register_cost(tech, bits, need=None) -> Cost:
    """A ``bits``-wide register (one write per operation): bits x ``register_bit``."""
    p = load_technology(tech).primitive("register_bit", need)
    return Cost(p.energy_pj * bits, p.area_um2 * bits)


# ---------------------------------------------------------------------------------------
# formats -> primitives

def _sig_width(fmt):
    """Significand width of a format: p = man_bits + 1, or an integer's bits."""
    return fmt.man_bits + 1 if isinstance(fmt, FloatFormat) else fmt.bits


def mul_cost(tech, a, b, need=None) -> Cost:
    """Multiplier for operands of formats ``a`` x ``b`` (``tech``: a loaded
    :class:`~accsim.hardware.technology.Technology`)."""
    if not isinstance(a, FloatFormat) and not isinstance(b, FloatFormat):
        return tech.cost_at("int_mul", (a.bits, b.bits), need)
    return tech.cost_at("fp_mul", (_sig_width(a), _sig_width(b)), need)


def add_cost(tech, fmt, need=None) -> Cost:
    """Adder of an accumulator format (``tech``: a loaded
    :class:`~accsim.hardware.technology.Technology`)."""
    if isinstance(fmt, FloatFormat):
        return tech.cost_at("fp_add", (fmt.exp_bits, fmt.man_bits + 1), need)
    return tech.cost_at("int_add", (fmt.bits,), need)


def _exp_width(fmt):
    """Exponent bits of a float format; an integer's leading-one position, in bits."""
    if isinstance(fmt, FloatFormat):
        return fmt.exp_bits
    return max(1, math.ceil(math.log2(fmt.bits)))


# ---------------------------------------------------------------------------------------
# per-MAC cost

def _acc_label(acc):
    return f"by accelerator '{acc.name}'"


def accumulate_cost(tech, fmt, need=None) -> Cost:
    """One accumulation step in format ``fmt``: its adder plus one write of its register
    (pJ per add; um2 per accumulator)."""
    return add_cost(tech, fmt, need) + register_cost(tech, fmt.bits, need)


def _seq_mac(acc, tech, fmt, need):
    return mul_cost(tech, acc.input, acc.weight, need) + accumulate_cost(tech, fmt, need)


def promotion_adders(accelerator) -> int:
    """Wide promotion adders of a ``chunked`` array (0 otherwise): one per PE
    (``per-pe``), ceil(cols / L) per row (``per-row``), ceil(rows / L) per column
    (``per-column``) or ceil(rows*cols / L) for the array (``outside``), L the chunk
    size: every PE hands over one partial sum each L terms, so a shared adder serves L
    PEs at full rate."""
    acc = accelerator
    if acc.structure != "chunked":
        return 0
    L, R, C = acc.chunk_size, acc.rows, acc.cols
    return {"per-pe": R * C, "per-row": R * math.ceil(C / L),
            "per-column": C * math.ceil(R / L), "outside": math.ceil(R * C / L)}[acc.promotion]


def promotion_cost(accelerator, tech, need=None) -> Cost:
    """The promotion of a ``chunked`` accumulator, per MAC (pJ) and per PE (um2).

    Energy: every L terms a wide add and a wide register write, plus, where the adder is
    shared (``per-row``, ``per-column``, ``outside``), moving the narrow partial sum to it
    (narrow bits x ``register_bit``). Area: one wide register per PE (the wide partial
    sum of the PE's output, held in the PE or in a register file outside the array alike)
    plus this PE's share of the :func:`promotion_adders` wide adders."""
    acc = accelerator
    if acc.structure != "chunked":
        return Cost(0.0, 0.0)
    tech = load_technology(tech)
    L = acc.chunk_size
    add = add_cost(tech, acc.wide, need)
    reg = register_cost(tech, acc.wide.bits, need)
    move = 0.0 if acc.promotion == "per-pe" else \
        register_cost(tech, acc.narrow.bits, need).energy_pj
    share = promotion_adders(acc) / (acc.rows * acc.cols)
    return Cost((add.energy_pj + reg.energy_pj + move) / L,
                reg.area_um2 + share * add.area_um2)


def mac_parts(accelerator, tech, which="narrow") -> dict:
    """A MAC split into ``multiplier``, ``accumulator`` (adder + register) and
    ``promotion`` (``chunked`` only), each a :class:`Cost` (pJ per MAC, um2 per PE);
    :func:`mac_cost` is their sum."""
    acc = accelerator
    tech = load_technology(tech)
    need = _acc_label(acc)
    mul = mul_cost(tech, acc.input, acc.weight, need)
    if which == "wide":
        return {"multiplier": mul, "accumulator": accumulate_cost(tech, acc.wide, need),
                "promotion": Cost(0.0, 0.0)}
    if which != "narrow":
        raise ValueError(f"which: expected 'narrow' or 'wide', got {which!r}")
    if acc.structure == "fused":
        T = acc.terms
        fmt = acc.narrow
        width = _sig_width(fmt) + (acc.guard_bits or 0) + 1 + math.ceil(math.log2(T + 1))
        step = (op_cost(tech, "int_add", width, need=need).scale(T, T)
                + accumulate_cost(tech, fmt, need))
        return {"multiplier": mul, "accumulator": step.scale(1 / T, 1 / T),
                "promotion": Cost(0.0, 0.0)}
    return {"multiplier": mul, "accumulator": accumulate_cost(tech, acc.narrow, need),
            "promotion": promotion_cost(acc, tech, need)}


def mac_cost(accelerator, tech, which="narrow") -> Cost:
    """Energy (pJ per MAC) and area (um2 per PE) of the narrow or wide datapath."""
    parts = mac_parts(accelerator, tech, which)
    return parts["multiplier"] + parts["accumulator"] + parts["promotion"]


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
    if estimator == "flag":
        return 0.0, register_cost(tech, 1, need).energy_pj, "mnk"
    compare = op_cost(tech, "int_add", _exp_width(acc.narrow) + 1, need=need).energy_pj
    if estimator == "output":
        return 0.0, compare, "mnk"
    test = (mul_cost(tech, acc.narrow, acc.narrow, need)
            + add_cost(tech, acc.narrow, need)).energy_pj
    if estimator == "exact":
        return _seq_mac(acc, tech, acc.narrow, need).energy_pj, test, "mnk"
    if estimator == "norm":
        sq = (mul_cost(tech, acc.input, acc.input, need)
              + accumulate_cost(tech, acc.narrow, need))
        return sq.energy_pj, test, "mk"
    w = max(_exp_width(acc.input), _exp_width(acc.weight)) + 1
    return 2 * op_cost(tech, "int_add", w, need=need).energy_pj, test, "mnk"


def refetch_energy_per_term(accelerator, tech, refetch=None):
    """Energy to bring back the two operands of one term of a re-issued output
    (``refetch``: one of :data:`REFETCH`; None: the accelerator's own)."""
    acc = accelerator
    tech = load_technology(tech)
    refetch = acc.refetch if refetch is None else refetch
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


def sram_bits(accelerator, m, n, k) -> int:
    """Bits moved between the SRAM buffer and the array for an m x n x k GEMM (the
    "memory" view): each fold of :func:`gemm_cycles` reads the operand tiles it streams,
    the stationary operand is read once, and outputs (at the wide format's width) are
    written once per fold of the k dimension. os: A m*k*ceil(n/cols), B k*n*ceil(m/rows),
    outputs m*n; ws: A m*k*ceil(n/cols), B k*n, outputs m*n*ceil(k/rows); is: A m*k,
    B k*n*ceil(m/cols), outputs m*n*ceil(k/rows)."""
    acc = accelerator
    R, C = acc.rows, acc.cols
    a, b, o = acc.input.bits, acc.weight.bits, acc.wide.bits
    if acc.dataflow == "os":
        return m * k * math.ceil(n / C) * a + k * n * math.ceil(m / R) * b + m * n * o
    if acc.dataflow == "ws":
        return m * k * math.ceil(n / C) * a + k * n * b + m * n * math.ceil(k / R) * o
    return m * k * a + k * n * math.ceil(m / C) * b + m * n * math.ceil(k / R) * o


def array_area(accelerator, tech, rungs=()) -> dict:
    """Area (um2) of the narrow array plus the wide column used for re-issues (and one
    column per intermediate ladder rung, ``rungs``: their formats), and of the all-wide
    baseline array; ``accumulator_area_um2`` / ``baseline_accumulator_area_um2``: the
    adders and registers alone (promotion included)."""
    acc = accelerator
    tech = load_technology(tech)
    need = _acc_label(acc)
    n = mac_parts(acc, tech, "narrow")
    w = mac_parts(acc, tech, "wide")
    pes, R = acc.rows * acc.cols, acc.rows
    extra = [accumulate_cost(tech, f, need).area_um2 for f in rungs]
    mul = n["multiplier"].area_um2
    acc_n = n["accumulator"].area_um2 + n["promotion"].area_um2
    acc_w = w["accumulator"].area_um2
    accum = pes * acc_n + R * (acc_w + sum(extra))
    return {"area_um2": accum + pes * mul + R * mul * (1 + len(extra)),
            "baseline_area_um2": pes * (mul + acc_w),
            "accumulator_area_um2": accum, "baseline_accumulator_area_um2": pes * acc_w}


# ---------------------------------------------------------------------------------------
# mixed precision

def _layer_int(layer, key, i, lo):
    v = layer.get(key) if isinstance(layer, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        name = layer.get("name", i) if isinstance(layer, dict) else i
        raise ValueError(f"layers[{i}] ({name}): '{key}': expected an integer >= {lo}, "
                         f"got {v!r}")
    return v


def _check_levels(L, i, r, m, n):
    """A layer's ``levels`` (outputs per rung) checked, with its re-issued count."""
    lv = L.get("levels")
    if lv is None:
        return None, r
    if not isinstance(lv, (list, tuple)) or len(lv) < 2 or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in lv) \
            or sum(lv) != m * n:
        raise ValueError(f"layers[{i}] ({L.get('name', i)}): 'levels': expected a "
                         f"list of >= 2 non-negative counts summing to {m * n}, "
                         f"got {lv!r}")
    if "recomputed" in L and r != m * n - lv[0]:
        raise ValueError(f"layers[{i}] ({L.get('name', i)}): 'recomputed': {r} is "
                         f"not the {m * n - lv[0]} outputs above rung 0 of 'levels'")
    return [int(c) for c in lv], m * n - lv[0]


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
        elif estimator in ("output", "flag"):
            terms, tests = 0, m * n
        else:
            terms, tests = m * n * k, m * n
        lv, r = _check_levels(L, i, r, m, n)
        out.append({"name": str(L.get("name", f"layer{i}")), "m": m, "n": n, "k": k,
                    "outputs": m * n, "recomputed": r, "levels": lv,
                    "narrow_macs": m * n * k, "wide_macs": r * k,
                    "estimator_terms": terms, "estimator_tests": tests,
                    "refetch_terms": r * k})
    return out


def energy_table(accelerator, tech, estimator="none", refetch=None) -> dict:
    """Energy per action (pJ) for every action of a run; ``multiplier``,
    ``narrow_accumulate`` (adder + register + promotion share) and ``wide_accumulate``
    split the MACs for the views; ``sram_bit``: one bit moved to or from the SRAM buffer
    (None when the table has no ``sram_read_32b``)."""
    tech = load_technology(tech)
    e_term, e_test, _ = estimator_costs(accelerator, tech, estimator)
    n = mac_parts(accelerator, tech, "narrow")
    w = mac_parts(accelerator, tech, "wide")
    sram = tech.primitives.get("sram_read_32b")
    return {"narrow_mac": sum(c.energy_pj for c in n.values()),
            "wide_mac": sum(c.energy_pj for c in w.values()),
            "estimator_term": e_term, "estimator_test": e_test,
            "refetch_term": refetch_energy_per_term(accelerator, tech, refetch),
            "multiplier": n["multiplier"].energy_pj,
            "narrow_accumulate": n["accumulator"].energy_pj + n["promotion"].energy_pj,
            "wide_accumulate": w["accumulator"].energy_pj,
            "sram_bit": None if sram is None else sram.energy_pj / 32}


def _ladder_accelerator(acc, ladder):
    """(accelerator with narrow / wide = the ladder's ends, rung formats) or (acc, None)."""
    if ladder is None:
        return acc, None
    if not isinstance(ladder, (list, tuple)) or len(ladder) < 2:
        raise ValueError(f"ladder: expected a list of at least 2 formats, got {ladder!r}")
    fmts = []
    for i, f in enumerate(ladder):
        try:
            fmts.append(load_format(f))
        except ValueError as exc:
            raise ValueError(f"ladder: rung {i}: {f!r}: {str(exc).splitlines()[0]}") from None
    return replace(acc, narrow=fmts[0], wide=fmts[-1]), fmts


def _layer_views(acc, c, lv, rung_acc, ert, static, est_pj, mac_pj):
    """Energy (pJ) of one layer in each of :data:`VIEWS`, with its all-wide baseline."""
    k = c["k"]
    narrow_terms = lv[0] * k if static else c["narrow_macs"]
    accum = narrow_terms * rung_acc[0] + sum(
        lv[q] * k * rung_acc[q] for q in range(1, len(lv))) + est_pj
    out = {"accumulator": {"energy_pj": accum,
                           "baseline_energy_pj": c["narrow_macs"] * ert["wide_accumulate"]},
           "mac": {"energy_pj": mac_pj,
                   "baseline_energy_pj": c["narrow_macs"] * ert["wide_mac"]}}
    if ert["sram_bit"] is not None:
        mem = sram_bits(acc, c["m"], c["n"], k) * ert["sram_bit"]
        out["memory"] = {"energy_pj": mac_pj + mem,
                         "baseline_energy_pj": out["mac"]["baseline_energy_pj"] + mem}
    return out


def _price_layer(acc, c, rungs, ert, static):
    """One layer of :func:`price_run` (``c``: its :func:`action_counts` entry,
    ``rungs``: (MAC energy, accumulate energy) per rung in pJ, ``ert``:
    :func:`energy_table`): its entry of ``layers``, and its cycles without re-issues
    (the baseline's)."""
    R = len(rungs)
    lv = c["levels"]
    if lv is None:
        lv = [c["outputs"] - c["recomputed"]] + [0] * (R - 2) + [c["recomputed"]]
    elif len(lv) != R:
        raise ValueError(f"layers ({c['name']}): 'levels': expected {R} counts (one per "
                         f"rung), got {len(lv)}")
    rung_pj = [lv[q] * c["k"] * rungs[q][0] for q in range(R)]
    narrow_pj = (rung_pj[0] if static else c["narrow_macs"] * ert["narrow_mac"])
    b = {"narrow_macs_pj": narrow_pj,
         "wide_macs_pj": sum(rung_pj[1:]),
         "estimator_pj": c["estimator_terms"] * ert["estimator_term"]
         + c["estimator_tests"] * ert["estimator_test"],
         "refetch_pj": 0.0 if static else c["refetch_terms"] * ert["refetch_term"]}
    base = c["narrow_macs"] * ert["wide_mac"]
    g = gemm_cycles(acc, c["m"], c["n"], c["k"])
    extra = math.ceil(c["recomputed"] / acc.rows) * c["k"]
    e = sum(b.values())
    views = _layer_views(acc, c, lv, [r[1] for r in rungs], ert, static,
                         b["estimator_pj"], e)
    return {"name": c["name"], "energy_pj": e, "baseline_energy_pj": base,
            "energy_savings": 1 - e / base, "cycles": g + extra,
            "recomputed_fraction": c["recomputed"] / c["outputs"],
            "levels": list(lv), "rung_macs_pj": [narrow_pj] + rung_pj[1:],
            "breakdown": b, "views": views}, g


def _rung_energies(acc, tech, ert, fmts):
    """(MAC energy, accumulate energy) in pJ per rung, cheapest first."""
    need = _acc_label(acc)
    mid = [accumulate_cost(tech, f, need).energy_pj for f in (fmts or [])[1:-1]]
    return ([(ert["narrow_mac"], ert["narrow_accumulate"])]
            + [(ert["multiplier"] + a, a) for a in mid]
            + [(ert["wide_mac"], ert["wide_accumulate"])])


def _sum_views(per_layer):
    """Network totals of the layers' views, with savings."""
    out = {}
    for v in VIEWS:
        if any(v not in d["views"] for d in per_layer):
            continue
        e = sum(d["views"][v]["energy_pj"] for d in per_layer)
        b = sum(d["views"][v]["baseline_energy_pj"] for d in per_layer)
        out[v] = {"energy_pj": e, "baseline_energy_pj": b, "energy_savings": 1 - e / b}
    return out


def price_run(accelerator, tech, layers, estimator="none", refetch=None, *,
              ladder=None, static=False) -> dict:
    """Energy, area and cycles of a mixed-precision run (see the module docstring).

    ``layers``: a list of ``{"name", "m", "n", "k", "recomputed"}`` (``recomputed``: how
    many of the m*n outputs were re-issued on the wide accumulator), optionally with
    ``levels`` (outputs per ladder rung). ``ladder``: rung formats (or names), cheapest
    first; ``static``: per-neuron rungs fixed offline (no narrow pass, estimator or
    re-fetch for outputs above rung 0; pass ``estimator="none"``). ``refetch``: one of
    :data:`REFETCH` (None: the accelerator's ``pricing.refetch``). ``views``: energy,
    baseline and savings of each of :data:`VIEWS` (``mac`` is the top-level figure;
    ``memory`` is absent when the table has no ``sram_read_32b``), areas in ``area``.
    """
    acc, fmts = _ladder_accelerator(accelerator, ladder)
    tech = load_technology(tech)
    refetch = acc.refetch if refetch is None else refetch
    counts = action_counts(acc, layers, estimator)
    ert = energy_table(acc, tech, estimator, refetch)
    area = array_area(acc, tech, (fmts or [])[1:-1])
    rungs = _rung_energies(acc, tech, ert, fmts)
    R = len(rungs)
    tot = dict.fromkeys(("narrow_macs_pj", "wide_macs_pj", "estimator_pj", "refetch_pj"),
                        0.0)
    rung_tot = [0.0] * R
    base_cycles = 0
    per_layer = []
    for c in counts:
        d, g = _price_layer(acc, c, rungs, ert, static)
        for q in range(R):
            rung_tot[q] += d["rung_macs_pj"][q]
        for key in tot:
            tot[key] += d["breakdown"][key]
        base_cycles += g
        per_layer.append(d)
    energy = sum(tot.values())
    base_total = sum(d["baseline_energy_pj"] for d in per_layer)
    cycles = sum(d["cycles"] for d in per_layer)
    outputs = sum(c["outputs"] for c in counts)
    return {"accelerator": acc.name, "technology": tech.name, "estimator": estimator,
            "refetch": refetch, "energy_pj": energy, "baseline_energy_pj": base_total,
            "energy_savings": 1 - energy / base_total, **area,
            "area_savings": 1 - area["area_um2"] / area["baseline_area_um2"],
            "cycles": cycles, "baseline_cycles": base_cycles,
            "seconds": cycles / (acc.clock_ghz * 1e9),
            "recomputed_fraction": sum(c["recomputed"] for c in counts) / outputs,
            "breakdown": tot, "rung_macs_pj": rung_tot, "static": bool(static),
            "views": _sum_views(per_layer), "layers": per_layer}


def run_break_even(accelerator, tech, layers, estimator="none", refetch=None, *,
                   ladder=None, static=False) -> dict:
    """The re-issued fraction f* of every layer's outputs at which the run saves nothing,
    per view (:data:`VIEWS`): energy is linear in f, E(f) = E(0) + f*(E(1) - E(0)), so
    f* = (baseline - E(0)) / (E(1) - E(0)). Below f* the run saves energy; f* < 0: it
    never does; f* > 1: it always does (e.g. ``static``, which runs no narrow pass).
    A ladder is taken at its two ends (narrow pass, re-issue on the widest rung)."""
    ends = None if ladder is None else [ladder[0], ladder[-1]]
    plain = [{k: v for k, v in L.items() if k not in ("levels", "recomputed")}
             for L in layers]
    p0 = price_run(accelerator, tech, [dict(L, recomputed=0) for L in plain], estimator,
                   refetch, ladder=ends, static=static)
    p1 = price_run(accelerator, tech,
                   [dict(L, recomputed=L["m"] * L["n"]) for L in plain], estimator,
                   refetch, ladder=ends, static=static)
    out = {}
    for v, d0 in p0["views"].items():
        e0, e1, b = d0["energy_pj"], p1["views"][v]["energy_pj"], d0["baseline_energy_pj"]
        out[v] = (b - e0) / (e1 - e0) if e1 != e0 else None
    return out


def break_even_table(accelerator, tech, layers, refetch=None, *, ladder=None) -> dict:
    """:func:`run_break_even` for every estimator of a dynamic policy (``dynamic``:
    estimator -> view -> f*) and for ``static``."""
    return {"dynamic": {e: run_break_even(accelerator, tech, layers, e, refetch,
                                          ladder=ladder) for e in ESTIMATORS},
            "static": run_break_even(accelerator, tech, layers, "none", refetch,
                                     ladder=ladder, static=True)}


def priced_estimator(accelerator, policy, estimator) -> str:
    """The hardware estimator that prices a run of ``policy`` whose scheduler used
    ``estimator``: ``condition`` / ``absolute`` / ``multi-level`` the same-named
    hardware, ``overflow``
    the narrow accumulator's flag, every other policy none; an accelerator whose
    ``pricing.estimator`` is not ``auto`` replaces any of these but none."""
    est = (estimator if policy in ("condition", "absolute", "multi-level") else
           "flag" if policy == "overflow" else "none")
    hw = accelerator.estimator_hardware
    return hw if est != "none" and hw != "auto" else est


def assumptions(accelerator, tech, estimator, refetch=None) -> dict:
    """The pricing assumptions behind a run's savings, in words (printed next to them)."""
    acc = accelerator
    tech = load_technology(tech)
    refetch = acc.refetch if refetch is None else refetch
    out = {"technology": tech.name, "estimator": estimator,
           "estimator_hardware": ESTIMATOR_HARDWARE[estimator], "refetch": refetch,
           "refetch_hardware": REFETCH_TEXT[refetch],
           "reissue": f"re-issued outputs run after the narrow pass on a column of "
                      f"{acc.rows} wide MACs (k cycles each)",
           "baseline": f"the same {acc.rows}x{acc.cols} array with {acc.wide.label} "
                       f"accumulators everywhere"}
    if acc.structure == "chunked":
        out["promotion"] = acc.promotion
        out["promotion_hardware"] = (
            f"{promotion_adders(acc)} wide {acc.wide.label} adder(s) {acc.promotion}, "
            f"one promotion every {acc.chunk_size} terms")
    return out


def price_simulation(accelerator, tech, result, estimator=None, refetch=None) -> dict:
    """Price a :class:`accsim.network.SimulationResult` (the keys ``accsim simulate
    --json`` reports; per inference: divided by the result's ``n_samples``, the samples
    being one batch on the array):

    * ``energy_per_inference_pj``, ``baseline_energy_per_inference_pj`` (every MAC on the
      wide accumulator), ``energy_savings`` (1 - energy / baseline), ``area_um2``,
      ``baseline_area_um2``, ``area_savings``, ``cycles_per_inference``,
      ``reissue_cycles_per_inference``: the whole-MAC view;
    * ``views``: per view of :data:`VIEWS` the same energy / area keys and savings;
    * ``break_even_fraction`` (this policy and estimator, per view) and ``break_even``
      (every estimator and ``static``, per view): the re-issued fraction at which the
      run stops saving energy (:func:`run_break_even`);
    * ``assumptions`` (:func:`assumptions`), ``technology``, ``estimator``,
      ``recomputed_fraction``, ``breakdown`` (pJ, all samples), per-layer ``layers``;
    * deprecated, all samples together: ``energy_pj``, ``baseline_energy_pj``,
      ``cycles`` (use the per-inference keys).

    ``estimator``: the hardware estimator whose actions are charged; by default
    :func:`priced_estimator` of the result's policy and estimator (``static`` computes
    none at inference). ``refetch``: None for the accelerator's ``pricing.refetch``.

    ``uniform-wide`` is priced as every output on the wide MAC only (the baseline: no
    narrow pass, no re-fetch, the all-wide array's area). Ladder policies (``multi-level``, ``static``): each rung's
    outputs are priced at that rung's MAC (the result's ``ladder_formats``, which replace
    the accelerator's narrow and wide accumulators; the baseline is every MAC on the
    widest rung); ``static`` charges no narrow pass and no re-fetch for outputs above
    rung 0.
    """
    acc = accelerator
    pol = getattr(result, "policy", "uniform-narrow")
    if estimator is None:
        estimator = priced_estimator(acc, pol, getattr(result, "estimator", "exact"))
    refetch = acc.refetch if refetch is None else refetch
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
    static = pol in ("static", "uniform-wide")
    p = price_run(acc, tech, layers, estimator, refetch, ladder=ladder, static=static)
    if pol == "uniform-wide":       # the all-wide array itself: no narrow array to build
        p = dict(p, area_um2=p["baseline_area_um2"], area_savings=0.0,
                 accumulator_area_um2=p["baseline_accumulator_area_um2"])
    out = {k: p[k] for k in ("energy_pj", "baseline_energy_pj", "energy_savings",
                             "area_um2", "baseline_area_um2", "area_savings", "cycles",
                             "breakdown", "layers", "rung_macs_pj")}
    n = max(1, int(getattr(result, "n_samples", 1) or 1))
    out.update(per_inference(p, n))
    out["technology"] = p["technology"]
    out["estimator"] = estimator
    out["recomputed_fraction"] = result.recomputed_fraction
    out["break_even_fraction"] = run_break_even(acc, tech, layers, estimator, refetch,
                                                ladder=ladder, static=static)
    out["break_even"] = break_even_table(acc, tech, layers, refetch, ladder=ladder)
    out["assumptions"] = assumptions(acc, tech, estimator, refetch)
    return out


def per_inference(priced, n_samples) -> dict:
    """The unit-carrying keys of a :func:`price_run` result over ``n_samples``
    inferences: energies per inference (pJ), areas (um2), savings (fractions), cycles
    per inference, and the same per view under ``views``."""
    p, n = priced, n_samples
    out = {"energy_per_inference_pj": p["energy_pj"] / n,
           "baseline_energy_per_inference_pj": p["baseline_energy_pj"] / n,
           "energy_savings": p["energy_savings"], "area_um2": p["area_um2"],
           "baseline_area_um2": p["baseline_area_um2"], "area_savings": p["area_savings"],
           "cycles_per_inference": p["cycles"] / n,
           "reissue_cycles_per_inference": (p["cycles"] - p["baseline_cycles"]) / n}
    views = {}
    for v, d in p["views"].items():
        views[v] = {"energy_per_inference_pj": d["energy_pj"] / n,
                    "baseline_energy_per_inference_pj": d["baseline_energy_pj"] / n,
                    "energy_savings": d["energy_savings"]}
        if v == "accumulator":
            a, b = p["accumulator_area_um2"], p["baseline_accumulator_area_um2"]
        elif v == "mac":
            a, b = p["area_um2"], p["baseline_area_um2"]
        else:               # the SRAM's area is not in the technology tables
            a = b = None
        views[v].update(area_um2=a, baseline_area_um2=b,
                        area_savings=None if a is None else 1 - a / b)
    out["views"] = views
    return out


def break_even_fraction(accelerator, tech, k, estimator="none", refetch=None, n=None):
    """Re-issued fraction of outputs at which the mixed-precision run saves nothing
    (whole-MAC view), for outputs of k terms in rows of n outputs (n defaults to k).

    Per output, with e_n, e_w the narrow / wide MAC energies, t the estimator energy per
    term action, s its per-output test, r the re-fetch energy per term:
    energy(f) = k*e_n + k_est*t + s + f*k*(e_w + r) and baseline = k*e_w, where k_est = k
    (exact, exponent), k/n (norm: one input norm of k terms shared by the n outputs of a
    row) or 0 (none, output, flag). Savings are 0 at
    f* = (k*(e_w - e_n) - k_est*t - s) / (k*(e_w + r)), i.e. :func:`run_break_even` of
    one row of n outputs. The result may be negative (the scheme never pays) or above 1
    (it always pays).
    """
    _pos_int("k", k, 1, 1 << 40)
    if n is None:
        n = k
    _pos_int("n", n, 1, 1 << 40)
    return run_break_even(accelerator, tech, [{"name": "row", "m": 1, "n": n, "k": k}],
                          estimator, refetch)["mac"]


# ---------------------------------------------------------------------------------------
# op specs for the CLI

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
    if arg in FLOAT_NAMES:
        e, man = FLOAT_NAMES[arg]
    else:
        m = re.fullmatch(r"e(\d+)m(\d+)", arg)
        if not m:
            raise ValueError(f"--op {spec}: expected eXmY or one of "
                             f"{', '.join(FLOAT_NAMES)}")
        e, man = int(m.group(1)), int(m.group(2))
    return f"{arg}_{op[3:]}", op, (e, man)

def ops_table(tech, extra=()) -> dict:
    """Every standard primitive plus the asked ones: key -> {energy_pj, area_um2}."""
    tech = load_technology(tech)
    out = {}
    for spec in list(STANDARD_OPS) + list(extra):
        if spec in STANDARD_OPS:
            kind, w = parse_primitive_key(spec)
            c = tech.cost_at(kind, w)
            key = spec
        else:
            key, op, widths = parse_op(spec)
            c = op_cost(tech, op, *widths)
        out[key] = c.as_dict()
    return out
