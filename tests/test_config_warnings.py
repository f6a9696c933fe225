"""Suspicious configurations warn: an integer accumulator narrower than one product of
the operands it sums gives one warning naming the matmul layers (one line from the CLI)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from accsim.network import simulate
from accsim.network.simulation import AccumulatorWidthWarning

ROOT = Path(__file__).resolve().parent.parent


def test_int_register_narrower_than_products_warns_naming_the_layers():
    with pytest.warns(AccumulatorWidthWarning,
                      match=r"^layers linear0, linear2: the int12 accumulator \(12 bits\) is "
                            r"narrower than the int8 x int8 products it sums \(15 bits\)$"):
        simulate("digits-mlp-relu", "int8-int16acc-sat", narrow="int12", limit=8)


def test_a_wide_enough_int_register_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate("digits-mlp-relu", "int8-int16acc-sat", limit=8)     # int16 >= 15 bits
        simulate("digits-mlp-relu", "fp16-fp16acc", limit=8)          # float: no check


def test_cli_prints_the_warning_on_one_line():
    env = dict(os.environ, PYTHONPATH=str(ROOT), ACCSIM_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "accsim", "simulate", "digits-mlp-relu",
                        "-a", "int8-int16acc-sat", "--narrow", "int12", "--narrow-only",
                        "--limit", "8"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "accsim: warning: layers linear0, linear2: the int12 accumulator (12 bits) is "
        "narrower than the int8 x int8 products it sums (15 bits)"]
