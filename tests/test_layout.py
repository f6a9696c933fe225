"""The package layout: old import paths, and the Datapath value the engine takes."""

import importlib
import sys

import numpy as np
import pytest

import accsim
from accsim import FloatFormat, load_accelerator, matmul, quantize
from accsim.numerics.datapath import Datapath


@pytest.mark.parametrize("old, new", [("accsim.engine", "accsim.numerics.engine"),
                                      ("accsim.formats", "accsim.numerics.formats"),
                                      ("accsim.cost", "accsim.hardware.cost"),
                                      ("accsim.sweep", "accsim.experiments.sweep")])
def test_old_import_paths_warn_and_give_the_new_module(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"import {new} instead") as rec:
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)
    assert mod.__spec__.name == new


def test_deprecation_warning_points_at_the_users_import():
    sys.modules.pop("accsim.trace", None)
    with pytest.warns(DeprecationWarning) as rec:
        import accsim.trace  # noqa: F401
    assert rec[0].filename == __file__


def test_old_network_module_names_still_import():
    from accsim.network import resolve_trace, simulate
    assert simulate is accsim.simulate
    assert resolve_trace("mnist-mlp-relu").name == "mnist-mlp-relu"


def _operands(rng, m, k, n):
    a = quantize(rng.standard_normal((m, k)), "fp16")
    b = quantize(rng.standard_normal((k, n)), "fp16")
    return a, b


def test_datapath_gives_the_same_bits_as_keywords():
    rng = np.random.default_rng(5)
    a, b = _operands(rng, 7, 300, 5)
    for kw in (dict(rounding="rz"), dict(structure="chunked", chunk_size=32, wide="fp32"),
               dict(structure="fused", terms=8, guard_bits=2, align_rounding="rd"),
               dict(structure="tree"), dict(product="bf16", product_rounding="rz")):
        via_kw = matmul(a, b, "e6m5", **kw)
        via_dp = matmul(a, b, Datapath("e6m5", **kw))
        np.testing.assert_array_equal(via_kw.values, via_dp.values)
        np.testing.assert_array_equal(via_kw.events.flags, via_dp.events.flags)


def test_accelerator_datapath_is_what_its_matmul_runs():
    acc = load_accelerator("fp16-fp16acc")
    dp = acc.datapath("narrow")
    assert dp.acc == acc.narrow and dp.input == acc.input and dp.weight == acc.weight
    assert acc.datapath("wide").acc == acc.wide
    rng = np.random.default_rng(1)
    a, b = _operands(rng, 4, 64, 3)
    np.testing.assert_array_equal(acc.matmul(a, b).values, matmul(a, b, dp).values)


@pytest.mark.parametrize("kw, msg", [
    (dict(chunk_size=4), "chunk_size: only meaningful with structure 'chunked'"),
    (dict(structure="chunked", chunk_size=4), "wide: structure 'chunked' needs"),
    (dict(terms=8), "terms: only meaningful with structure 'fused'"),
    (dict(structure="fused", align_rounding="ru"), "align_rounding: expected one of"),
    (dict(product_rounding="rz"), "product_rounding: only meaningful with a product format"),
    (dict(structure="diagonal"), "structure: expected one of"),
    (dict(rounding="nearest"), "rounding"),
])
def test_datapath_refuses_what_does_not_apply(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Datapath(FloatFormat(5, 10), **kw)


def test_matmul_refuses_keywords_beside_a_datapath():
    a = np.ones((2, 3))
    b = np.ones((3, 2))
    with pytest.raises(ValueError, match="rounding: part of the Datapath"):
        matmul(a, b, Datapath("fp16"), rounding="rz")

def test_datapath_is_frozen():
    import dataclasses
    with pytest.raises(dataclasses.FrozenInstanceError):
        Datapath("fp16").rounding = "rz"


def test_int64_register_near_2_63_reads_without_a_cast_warning():
    """2^63 - 1 (saturated) has no float64 value: .values refuses it, with no numpy
    'invalid value encountered in cast' on the way (python integers are the oracle)."""
    import warnings
    a = np.full((1, 40), 2.0**29)
    b = np.full((40, 1), 2.0**29)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = matmul(a, b, accsim.IntFormat(64, overflow="saturate"))
        assert int(r.int_values[0, 0]) == min(40 * 2**58, 2**63 - 1)
        with pytest.raises(ValueError, match="more than 53 significant bits"):
            r.values


def test_misspelt_format_key_gets_a_suggestion(tmp_path):
    p = tmp_path / "f.yaml"
    p.write_text("kind: number_format\nversion: 1\nname: f\ntype: float\nexp_bits: 5\n"
                 "man_bits: 10\nsubnormal: true\n")
    with pytest.raises(ValueError, match="did you mean .subnormals."):
        accsim.load_format(p)
