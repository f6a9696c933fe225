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
  are read again, k*(input bits + weight bits) x ``register_bit`` (for int8 operands
  into an int16 accumulator re-issued to int32 on ``horowitz-45nm``, k = 512, this puts
  the break-even re-issued fraction at ≈26 %, against ≈6 % with ``buffer``);
  ``none``: free.

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
from dataclasses import replace

from ..numerics.config import load_format
from ..numerics.formats import FloatFormat
from .technology import FLOAT_NAMES, OPS, Cost, load_technology, parse_primitive_key

ESTIMATORS = ("none", "exact", "norm", "exponent")
"""How the re-issue decision is made at run time (see "Mixed precision" above)."""
REFETCH = ("buffer", "pe", "none")
"""Where a re-issued output's operands come back from (see "Mixed precision" above)."""
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
    if not isinstance(ladder, (list, tuple)) or len(ladder) < 2:
        raise ValueError(f"ladder: expected a list of at least 2 formats, got {ladder!r}")
    fmts = []
    for i, f in enumerate(ladder):
        try:
            fmts.append(load_format(f))
        except ValueError as exc:
            raise ValueError(f"ladder: rung {i}: {f!r}: {str(exc).splitlines()[0]}") from None
    return replace(acc, narrow=fmts[0], wide=fmts[-1]), fmts


def _price_layer(acc, c, rung_mac, ert, static):
    """One layer of :func:`price_run` (``c``: its :func:`action_counts` entry,
    ``rung_mac``: MAC energy per rung in pJ, ``ert``: :func:`energy_table`): its entry
    of ``layers``, and its cycles without re-issues (the baseline's)."""
    R = len(rung_mac)
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
    g = gemm_cycles(acc, c["m"], c["n"], c["k"])
    extra = math.ceil(c["recomputed"] / acc.rows) * c["k"]
    e = sum(b.values())
    return {"name": c["name"], "energy_pj": e, "baseline_energy_pj": base,
            "energy_savings": 1 - e / base, "cycles": g + extra,
            "recomputed_fraction": c["recomputed"] / c["outputs"],
            "levels": list(lv), "rung_macs_pj": [narrow_pj] + rung_pj[1:],
            "breakdown": b}, g


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
        d, g = _price_layer(acc, c, rung_mac, ert, static)
        for q in range(R):
            rung_tot[q] += d["rung_macs_pj"][q]
        for key in tot:
            tot[key] += d["breakdown"][key]
        base_total += d["baseline_energy_pj"]
        cycles += d["cycles"]
        base_cycles += g
        outputs += c["outputs"]
        recomputed += c["recomputed"]
        per_layer.append(d)
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
    own when its policy computes an estimate at run time (``condition``, ``absolute``,
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
            if pol in ("condition", "absolute", "multi-level") else "none"
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
