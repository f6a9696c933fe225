"""Summaries of a sweep folder (``results.jsonl`` written by
:mod:`accsim.experiments.sweep`): Markdown tables, PNG plots and Pareto points.

Pareto points: per trace, a point is on the front when no other point of the same trace
has at least its agreement (share of samples whose argmax equals the float64
reference's) at no more energy per inference, and is strictly better in one of the two.
Each policy's own front is the same over that policy's points only.

Files written by :func:`write_report` (atomically: temp file + rename):

``report.md``
    per trace: every point, a per-policy summary, the cheapest point of each policy that
    matches the agreement of the wide accumulator, and the Pareto points. Energies are
    per inference (whole MAC: multipliers, accumulators, estimator and re-fetch);
    "savings %" is against the same array with the wide accumulator everywhere, and
    "accumulator savings %" the same for adders and registers alone
    (:func:`accsim.hardware.cost.price_simulation`).
``energy_<trace>.png``
    agreement and accuracy (%) versus energy per inference, one colour per policy with
    its Pareto front as a step line; the all-narrow points and the all-wide baseline
    (every MAC on the wide accumulator) are marked.
``tau_<trace>.png``
    re-issued fraction of the output components versus τ (log axis), one line per policy
    and narrow format (points with a τ only).
``layers_<trace>.png``
    per-layer re-issued fractions (grouped bars) of the Pareto points and the other
    points with a budget (at most 10).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .. import __version__
from .results import RESULTS, read_results, write_atomic, write_text_atomic
from .spec import canonical_json

UNIFORM = ("uniform-narrow", "uniform-wide")


# ---------------------------------------------------------------------------------------
# loading and Pareto fronts
# ---------------------------------------------------------------------------------------
def load_results(folder) -> list:
    """The records of ``folder/results.jsonl`` (a torn last line is ignored). A missing
    folder or file, an empty file or a corrupt line is a one-line ``ValueError``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (expected the --out folder of accsim "
                         f"sweep)")
    path = folder / RESULTS
    if not path.is_file():
        raise ValueError(f"{path}: not found (run 'accsim sweep SPEC --out {folder}' first)")
    records = read_results(path)
    if not records:
        raise ValueError(f"{path}: no finished points")
    seen, out = set(), []
    for i, r in enumerate(records):
        m = r.get("metrics")
        if not isinstance(m, dict) or not isinstance(r.get("params"), dict):
            raise ValueError(  # noqa: TRY004 - a bad file, reported like any other
                f"{path}: record {i + 1} has no params / metrics mapping")
        if r["id"] in seen:      # never written twice by accsim; keep the first
            continue
        seen.add(r["id"])
        out.append(r)
    return out


def _energy(r):
    """Energy per inference (pJ) of a record; results written before the unit-carrying
    keys have only the deprecated ``energy_per_sample_pj`` (the same quantity)."""
    m = r["metrics"]
    e = m.get("energy_per_inference_pj")
    return m.get("energy_per_sample_pj") if e is None else e


def _baseline_energy(r):
    """All-wide baseline energy per inference (pJ), as :func:`_energy`."""
    m = r["metrics"]
    e = m.get("baseline_energy_per_inference_pj")
    return m.get("baseline_energy_per_sample_pj") if e is None else e


def _agree(r):
    return r["metrics"].get("agreement")


def _usable(r):
    e, a = _energy(r), _agree(r)
    return e is not None and a is not None and math.isfinite(e) and math.isfinite(a)


def pareto(records) -> list:
    """The non-dominated records (maximise agreement, minimise energy per inference),
    sorted by energy; ties in both objectives are all kept."""
    pts = [r for r in records if _usable(r)]
    pts.sort(key=lambda r: (_energy(r), -_agree(r)))
    front, best = [], -math.inf
    i = 0
    while i < len(pts):
        j = i
        e = _energy(pts[i])
        group = []
        while j < len(pts) and _energy(pts[j]) == e:
            group.append(pts[j])
            j += 1
        top = max(_agree(g) for g in group)
        if top > best:
            front.extend(g for g in group if _agree(g) == top)
            best = top
        i = j
    return front


def _by(records, key):
    out = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def _trace(r):
    return r["params"]["trace"]


def _policy(r):
    return r["params"]["policy"]


def _summary(r) -> dict:
    m, p = r["metrics"], r["params"]
    return {"id": r["id"], "params": p,
            "agreement": m.get("agreement"), "accuracy": m.get("accuracy"),
            "energy_per_inference_pj": _energy(r),
            "energy_per_sample_pj": _energy(r),     # deprecated name of the same
            "energy_savings": m.get("energy_savings"),
            "accumulator_energy_savings": m.get("accumulator_energy_savings"),
            "recomputed_fraction": m.get("recomputed_fraction"),
            "narrow": m.get("narrow"), "wide": m.get("wide")}


def pareto_json(records) -> dict:
    """The Pareto points as a JSON-able dict: per trace, the front over all points
    (``pareto``) and each policy's own front (``pareto_by_policy``)."""
    out = {"objectives": {"maximise": "agreement", "minimise": "energy_per_inference_pj"},
           "points": len(records), "pareto": {}, "pareto_by_policy": {}}
    for trace, recs in sorted(_by(records, _trace).items()):
        out["pareto"][trace] = [_summary(r) for r in pareto(recs)]
        out["pareto_by_policy"][trace] = {
            pol: [_summary(r) for r in pareto(rs)]
            for pol, rs in sorted(_by(recs, _policy).items())}
    return out


#: the parameter columns of :func:`points_table` (``options``: canonical JSON)
POINT_PARAMS = ("trace", "accelerator", "narrow", "wide", "policy", "tau", "fraction",
                "estimator", "seed", "limit", "technology", "options")
#: the metric columns of :func:`points_table` (units as ``point_metrics``: fractions in
#: [0, 1], energies in pJ, area in µm²); ``narrow`` / ``wide`` are the accumulator labels.
#: ``energy_pj``, ``baseline_energy_pj`` and ``cycles`` (all samples) and the
#: ``*_per_sample_pj`` columns are deprecated: use the per-inference columns
POINT_METRICS = ("n_samples", "accuracy", "reference_accuracy", "agreement",
                 "recomputed_fraction", "bound_violations", "energy_pj",
                 "baseline_energy_pj", "energy_per_sample_pj",
                 "baseline_energy_per_sample_pj", "energy_savings", "area_um2", "cycles",
                 "energy_per_inference_pj", "baseline_energy_per_inference_pj",
                 "baseline_area_um2", "area_savings", "cycles_per_inference",
                 "accumulator_energy_savings", "memory_energy_savings",
                 "accumulator_area_savings", "break_even_fraction")


def points_table(records) -> tuple:
    """Every point as one row: ``(header, rows)``. Columns: ``id``, the parameters
    :data:`POINT_PARAMS`, the metrics :data:`POINT_METRICS`, the accumulator labels
    ``narrow_format`` / ``wide_format``, the event counts ``overflows`` / ``saturations``
    / ``inexact``, ``seconds`` (wall-clock time of the point) and ``pareto`` (on its
    trace's Pareto front: 1 or 0). ``None`` where a value is missing."""
    front = {r["id"] for recs in _by(records, _trace).values() for r in pareto(recs)}
    header = ("id", *POINT_PARAMS, *POINT_METRICS, "narrow_format", "wide_format",
              "overflows", "saturations", "inexact", "seconds", "pareto")
    rows = []
    for r in records:
        p, m = r["params"], r["metrics"]
        ev = m.get("events") or {}
        params = [p.get(k) for k in POINT_PARAMS[:-1]]
        opts = p.get("options")
        rows.append((r["id"], *params, canonical_json(opts) if opts else None,
                     *(m.get(k) for k in POINT_METRICS), m.get("narrow"), m.get("wide"),
                     ev.get("overflows"), ev.get("saturations"), ev.get("inexact"),
                     r.get("seconds"), int(r["id"] in front)))
    return header, rows


# ---------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------
def _energy_unit(values):
    """(scale, unit) so that energies in pJ read as numbers between 1 and 1000."""
    vals = [v for v in values if v is not None and v > 0]
    top = max(vals) if vals else 1.0
    for scale, unit in ((1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if top >= scale:
            return scale, unit
    return 1.0, "pJ"


def _pct(v, digits=2):
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _num(v, scale=1.0):
    return "-" if v is None else f"{v / scale:.4g}"


def _budget(p):
    if p.get("tau") is not None:
        return f"τ={p['tau']:g}"
    if p.get("fraction") is not None:
        return f"f={p['fraction']:g}"
    return "-"


def _config(r):
    """Short label of a point's configuration (policy, budget, formats)."""
    p, m = r["params"], r["metrics"]
    s = p["policy"]
    b = _budget(p)
    if b != "-":
        s += f" {b}"
    s += f" [{m.get('narrow', p.get('narrow'))}]"
    for k, v in sorted((p.get("options") or {}).items()):
        s += f" {k}={_compact(v)}"
    return s


def _compact(v):
    if isinstance(v, list):
        return "[" + ",".join(_compact(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "trace"


def _varying(records, keys):
    """Parameter keys whose value differs between records (shown as table columns)."""
    out = []
    for k in keys:
        vals = {repr(r["params"].get(k)) for r in records}
        if len(vals) > 1:
            out.append(k)
    return out


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in row) + " |")
    return lines


# ---------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------
def _pyplot():
    # matplotlib is imported only when a report draws plots: it is slow to import, and
    # nothing else in accsim needs it (the sweep and the CLI start without it)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path):
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120,
                                               bbox_inches="tight"))


def _colours(policies):
    import matplotlib   # imported on first use (see _pyplot)
    cmap = matplotlib.colormaps["tab10"]
    return {p: cmap(i % 10) for i, p in enumerate(sorted(policies))}


def _plot_energy(plt, trace, recs, path) -> bool:
    recs = [r for r in recs if _usable(r)]
    if not recs:
        return False
    scale, unit = _energy_unit([_energy(r) for r in recs]
                               + [_baseline_energy(r)
                                  for r in recs])
    has_acc = any(r["metrics"].get("accuracy") is not None for r in recs)
    metrics = [("agreement", "agreement with float64 (%)")]
    if has_acc:
        metrics.append(("accuracy", "top-1 accuracy (%)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 4.8),
                             squeeze=False)
    pols = _by(recs, _policy)
    col = _colours(pols)
    markers = "osD^v<>ph*"
    # marker: the hardware variant (narrow format, and accelerator when several)
    multi_acc = len({r["params"]["accelerator"] for r in recs}) > 1

    def variant(r):
        n = f"narrow {r['metrics'].get('narrow')}"
        return f"{r['params']['accelerator']} {n}" if multi_acc else n
    narrows = sorted({variant(r) for r in recs})
    mk = {n: markers[i % len(markers)] for i, n in enumerate(narrows)}
    xmax = max([_energy(r) / scale for r in recs]
               + [_baseline_energy(r) / scale for r in recs
                  if _baseline_energy(r) is not None])
    for ax, (key, ylabel) in zip(axes[0], metrics):
        for pol, rs in sorted(pols.items()):
            pts = [r for r in rs if r["metrics"].get(key) is not None]
            for n in narrows:
                sub = [r for r in pts if variant(r) == n]
                if sub:
                    ax.scatter([_energy(r) / scale for r in sub],
                               [100 * r["metrics"][key] for r in sub], color=col[pol],
                               marker=mk[n], s=36, alpha=0.8, zorder=3)
            # the policy's front in this metric (maximise key, minimise energy)
            front = pareto([dict(r, metrics=dict(r["metrics"], agreement=r["metrics"][key]))
                            for r in pts])
            if front:
                xs = [_energy(r) / scale for r in front]
                ys = [100 * r["metrics"][key] for r in front]
                ax.scatter(xs, ys, s=70, facecolors="none", edgecolors=col[pol], lw=1.2,
                           zorder=3)
                # the front's staircase, held at its best level up to the largest energy
                xs.append(max(xs[-1], xmax))
                ys.append(ys[-1])
                ax.step(xs, ys, where="post", color=col[pol], lw=1.5, zorder=2,
                        label=f"{pol} (Pareto front)")
        # all-wide baseline: every MAC on the wide accumulator, the wide accumulator's values
        wide = [r for r in recs if r["params"]["policy"] == "uniform-wide"
                and r["metrics"].get(key) is not None
                and _baseline_energy(r) is not None]
        for i, r in enumerate(wide):
            ax.scatter([_baseline_energy(r) / scale],
                       [100 * r["metrics"][key]], marker="*", s=160, color="black",
                       zorder=4, label="all-wide baseline" if i == 0 else None)
        for i, r in enumerate(r for r in recs if r["params"]["policy"] == "uniform-narrow"
                              and r["metrics"].get(key) is not None):
            ax.scatter([_energy(r) / scale], [100 * r["metrics"][key]], marker="s", s=110,
                       facecolors="none", edgecolors="black", zorder=4,
                       label="all-narrow" if i == 0 else None)
        for n in narrows:
            if len(narrows) > 1:
                ax.scatter([], [], marker=mk[n], color="grey", label=n)
        lo, hi = ax.get_ylim()          # percentages: never beyond [0, 100]
        ax.set_ylim(max(lo, -0.5), min(hi, 100.5))
        ax.set_xlabel(f"energy per inference ({unit})")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{trace}: {key} vs energy")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _plot_tau(plt, trace, recs, path) -> bool:
    pts = [r for r in recs if r["params"].get("tau") is not None
           and r["params"]["tau"] > 0 and r["metrics"].get("recomputed_fraction") is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    groups = _by(pts, lambda r: (r["params"]["policy"], str(r["metrics"].get("narrow")),
                                 r["params"].get("estimator"), r["params"]["accelerator"]))
    col = _colours({k[0] for k in groups})
    styles = ["-", "--", ":", "-."]
    narrows = sorted({k[1] for k in groups})
    multi_acc = len({k[3] for k in groups}) > 1
    pols = sorted(col)
    pmark = "os^Dv<>ph*"
    for (pol, n, est, acc), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        # average over seeds at each tau
        by_tau = _by(rs, lambda r: r["params"]["tau"])
        taus = sorted(by_tau)
        ys = [100 * sum(r["metrics"]["recomputed_fraction"] for r in by_tau[t])
              / len(by_tau[t]) for t in taus]
        label = f"{pol} [{n}]" + (f" {est}" if est not in (None, "exact") else "") \
            + (f" {acc}" if multi_acc else "")
        k = pols.index(pol)
        # policies with equal budgets (random / oracle match condition's count at each τ)
        # overlap: earlier policies are drawn wider underneath
        ax.plot(taus, ys, styles[narrows.index(n) % len(styles)],
                marker=pmark[k % len(pmark)], ms=max(4.0, 9.0 - 2.0 * k),
                lw=max(1.0, 3.5 - 1.0 * k), color=col[pol], label=label, zorder=2 + k)
    ax.set_xscale("log")
    ax.set_xlabel("threshold τ (log scale)")
    ax.set_ylabel("re-issued output components (%)")
    ax.set_title(f"{trace}: re-issued fraction vs τ")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _layer_points(recs, limit=10):
    budgeted = [r for r in recs if r["params"]["policy"] not in UNIFORM
                and r["metrics"].get("layers")]
    front_ids = {r["id"] for r in pareto(recs)}
    budgeted.sort(key=lambda r: (r["id"] not in front_ids, _energy(r) or 0.0))
    chosen = budgeted[:limit]
    chosen.sort(key=lambda r: (_policy(r), str(r["metrics"].get("narrow")),
                               r["params"].get("tau") or 0.0,
                               r["params"].get("fraction") or 0.0))
    return chosen


def _plot_layers(plt, trace, recs, path) -> bool:
    pts = _layer_points(recs)
    if not pts:
        return False
    names = [lr["name"] for lr in pts[0]["metrics"]["layers"]]
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(names) + 3), 4.8))
    width = 0.8 / len(pts)
    x = np.arange(len(names))
    for i, r in enumerate(pts):
        fr = {lr["name"]: lr.get("recomputed_fraction") for lr in r["metrics"]["layers"]}
        ys = [100 * (fr.get(n) or 0.0) for n in names]
        ax.bar(x - 0.4 + width * (i + 0.5), ys, width, label=_config(r))
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_xlabel("matmul layer")
    ax.set_ylabel("re-issued output components (%)")
    ax.set_title(f"{trace}: re-issued fraction per layer")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------
_PARAM_KEYS = ("accelerator", "narrow", "wide", "estimator", "seed", "limit", "technology")


def _markdown(records, source, figures) -> str:
    versions = sorted({str(r.get("accsim_version")) for r in records})
    lines = ["# accsim sweep report", "",
             f"Source: `{source}`: {len(records)} points; accsim {', '.join(versions)}.",
             ("Agreement: share of samples whose argmax equals the float64 reference's. "
              "Energy: per inference (sample). Savings: against every MAC on the wide "
              "accumulator. Re-issued: output components recomputed on the wide "
              "accumulator."),
             f"(report by accsim {__version__})", ""]
    for trace, recs in sorted(_by(records, _trace).items()):
        scale, unit = _energy_unit([_energy(r) for r in recs])
        extra = _varying(recs, _PARAM_KEYS)
        lines += [f"## {trace}", ""]
        for title, fname in figures.get(trace, []):
            lines += [f"![{title}]({fname})", ""]
        lines += ["### Per policy", ""] + _policy_table(recs, scale, unit) + [""]
        lines += ["### Best points", ""] + _best_points(recs, scale, unit) + [""]
        lines += ["### Pareto points (maximise agreement, minimise energy)", ""]
        lines += _pareto_table(recs, extra, scale, unit) + [""]
        lines += ["### All points", ""] + _all_points_table(recs, extra, scale, unit) + [""]
    return "\n".join(lines)


def _policy_table(recs, scale, unit) -> list:
    """Per policy: points, agreement and energy ranges, best savings (Markdown lines)."""
    rows = []
    for pol, rs in sorted(_by(recs, _policy).items()):
        ag = [_agree(r) for r in rs if _agree(r) is not None]
        en = [_energy(r) for r in rs if _energy(r) is not None]
        sv = [r["metrics"].get("energy_savings") for r in rs
              if r["metrics"].get("energy_savings") is not None]
        rows.append([pol, len(rs), _pct(min(ag)) if ag else "-",
                     _pct(max(ag)) if ag else "-", _num(min(en), scale) if en else "-",
                     _num(max(en), scale) if en else "-",
                     _pct(max(sv), 1) if sv else "-"])
    return _table(["policy", "points", "min agreement %", "max agreement %",
                   f"min energy ({unit})", f"max energy ({unit})", "best savings %"], rows)


def _best_points(recs, scale, unit) -> list:
    """The cheapest point of each policy that reaches the wide accumulator's agreement
    (without a uniform-wide point: the highest agreement), as Markdown lines."""
    wide_ag = [_agree(r) for r in recs if _policy(r) == "uniform-wide"
               and _agree(r) is not None]
    if not wide_ag:
        best = max((r for r in recs if _usable(r)), key=lambda r: (_agree(r), -_energy(r)),
                   default=None)
        return ["No uniform-wide point in this sweep; highest agreement: "
                + (f"{_config(best)} ({_pct(_agree(best))} %)" if best else "-")]
    target = min(wide_ag)
    lines = [f"Cheapest point of each policy whose agreement is at least the "
             f"wide accumulator's ({_pct(target)} %):", ""]
    rows = []
    for pol, rs in sorted(_by(recs, _policy).items()):
        ok = [r for r in rs if _usable(r) and _agree(r) >= target]
        if not ok:
            rows.append([pol, "none reaches it", "", "", "", "", "", ""])
            continue
        b = min(ok, key=_energy)
        rows.append([pol, _config(b), _pct(_agree(b)),
                     _pct(b["metrics"].get("accuracy")), _num(_energy(b), scale),
                     _pct(b["metrics"].get("energy_savings"), 1),
                     _pct(b["metrics"].get("accumulator_energy_savings"), 1),
                     _pct(b["metrics"].get("recomputed_fraction"))])
    return lines + _table(["policy", "point", "agreement %", "accuracy %",
                           f"energy ({unit})", "savings %", "accumulator savings %",
                           "re-issued %"], rows)


def _pareto_table(recs, extra, scale, unit) -> list:
    """The Pareto points of one trace, with the ``extra`` parameters that vary."""
    rows = [[_config(r)] + [r["params"].get(k) for k in extra]
            + [_pct(_agree(r)), _pct(r["metrics"].get("accuracy")),
               _num(_energy(r), scale), _pct(r["metrics"].get("energy_savings"), 1),
               _pct(r["metrics"].get("accumulator_energy_savings"), 1),
               _pct(r["metrics"].get("recomputed_fraction")), f"`{r['id']}`"]
            for r in pareto(recs)]
    return _table(["point"] + extra + ["agreement %", "accuracy %", f"energy ({unit})",
                                       "savings %", "accumulator savings %",
                                       "re-issued %", "id"], rows)


def _all_points_table(recs, extra, scale, unit) -> list:
    """Every point of one trace, sorted by policy, narrow format, budget and seed."""
    allr = sorted(recs, key=lambda r: (_policy(r), str(r["metrics"].get("narrow")),
                                       r["params"].get("tau") or 0.0,
                                       r["params"].get("fraction") or 0.0,
                                       r["params"].get("seed") or 0))
    rows = [[_policy(r), _budget(r["params"]), r["metrics"].get("narrow")]
            + [r["params"].get(k) for k in extra if k != "narrow"]
            + [_pct(_agree(r)), _pct(r["metrics"].get("accuracy")),
               _pct(r["metrics"].get("recomputed_fraction")),
               _num(_energy(r), scale), _pct(r["metrics"].get("energy_savings"), 1),
               r["metrics"].get("bound_violations", "-"), f"`{r['id']}`"]
            for r in allr]
    return _table(["policy", "budget", "narrow"] + [k for k in extra if k != "narrow"]
                  + ["agreement %", "accuracy %", "re-issued %", f"energy ({unit})",
                     "savings %", "bound violations", "id"], rows)


def write_report(records, out, *, source=None) -> list:
    """Write ``report.md`` and the PNG plots (module doc) into ``out``; returns the paths
    written. Every file is written to a temporary name and renamed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    written, figures, used = [], {}, set()
    for trace, recs in sorted(_by(records, _trace).items()):
        slug = base = _slug(Path(trace).name if "/" in trace else trace)
        k = 1
        while slug in used:     # two trace folders with the same name
            k += 1
            slug = f"{base}-{k}"
        used.add(slug)
        figs = []
        p = out / f"energy_{slug}.png"
        if _plot_energy(plt, trace, recs, p):
            written.append(p)
            figs.append(("agreement and accuracy vs energy", p.name))
        p = out / f"tau_{slug}.png"
        if _plot_tau(plt, trace, recs, p):
            written.append(p)
            figs.append(("re-issued fraction vs tau", p.name))
        p = out / f"layers_{slug}.png"
        if _plot_layers(plt, trace, recs, p):
            written.append(p)
            figs.append(("re-issued fraction per layer", p.name))
        figures[trace] = figs
    md = out / "report.md"
    write_text_atomic(md, _markdown(records, source or str(out), figures) + "\n")
    written.insert(0, md)
    return written
