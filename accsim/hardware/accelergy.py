"""Accelergy / Timeloop export: an accelerator's costs and a run's action counts.

:func:`export_accelergy` writes the energy reference table (ERT, pJ per action), the
area reference table (ART, um2 per component) and the action counts of a run in the
layout of Accelergy's and Timeloop's YAML files (version 0.4), from the cost model of
:mod:`accsim.hardware.pricing`. Components: the narrow MAC array
(``PE[0..rows*cols-1].narrow_mac``), the wide column for re-issues
(``wide_column[0..rows-1].wide_mac``), the estimator, and the buffer (or the PE operand
registers) that re-issued outputs re-fetch their operands from.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .pricing import action_counts, energy_table, mac_cost
from .technology import load_technology


def export_accelergy(accelerator, tech, counts, out=None, estimator="none",
                     refetch="buffer") -> dict:
    """Energy reference table (ERT), area reference table (ART) and action counts in the
    Accelergy/Timeloop layout. ``counts`` is a list of layers as for
    :func:`accsim.hardware.pricing.price_run`.
    Writes YAML to ``out`` when given; returns the document."""
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
