"""Progress on stderr: a compile notice when numba compiles (a cold cache) and progress
bars for ``simulate`` and ``sweep``; forced on by ACCSIM_PROGRESS=1 (stderr is no
terminal under pytest), never with --quiet or --json."""

import numba
import pytest

from accsim.cli import main
from accsim.cli.common import COMPILE_NOTICE, PROGRESS_ENV, compile_notice, show_progress

SPEC = """\
kind: sweep
version: 1
grid:
  traces: [digits-mlp-relu]
  accelerators: [fp16-fp32acc]
  narrow: [e5m5]
  policies: [uniform-narrow]
limit: 20
"""

SIM = ["simulate", "digits-mlp-relu", "--limit", "20"]


@pytest.fixture
def forced(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")


def test_show_progress_rules(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")
    assert show_progress()
    assert not show_progress(quiet=True)
    assert not show_progress(json_mode=True)
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert not show_progress()


def test_compile_notice_only_when_numba_compiles(capsys):
    @numba.njit(cache=False)
    def fresh(x):
        return x + 1

    with compile_notice():
        fresh(1)                    # compiles
        fresh(2)                    # compiled already
    assert capsys.readouterr().err == COMPILE_NOTICE + "\n"
    with compile_notice():
        fresh(3)
    assert capsys.readouterr().err == ""
    with compile_notice(enabled=False):
        fresh(1.5)                  # a new signature compiles, but the notice is off
    assert capsys.readouterr().err == ""


def test_simulate_draws_progress_when_forced(forced, capsys):
    assert main(SIM + ["--policy", "condition", "--tau", "0.3"]) == 0
    err = capsys.readouterr().err
    assert "narrow  [" in err and "wide    [" in err
    assert "20/20 samples" in err and "layer 1/2" in err and "left" in err


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_simulate_quiet_and_json_print_nothing_on_stderr(forced, capsys, flag):
    assert main(SIM + [flag]) == 0
    assert capsys.readouterr().err == ""


def test_sweep_bar_when_forced_and_silent_with_quiet(forced, capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "sweep [" in err and "1/1 points" in err
    assert main(["sweep", str(spec), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert (tmp_path / "b" / "results.jsonl").read_text().count("\n") == 1
