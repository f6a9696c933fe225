"""The README's ten-minute tour runs as written: a format and an accelerator in YAML
(examples/tour/), an ONNX model imported into a trace, a simulation, a sweep and its
report."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import yaml

from accsim import load_accelerator, load_format
from accsim.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "tour"


def _export_module():
    spec = importlib.util.spec_from_file_location("export_onnx", EXAMPLES / "export_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tour_yaml_files_load():
    fmt = load_format(EXAMPLES / "my-e6m12.yaml")
    assert (fmt.exp_bits, fmt.man_bits, fmt.name) == (6, 12, "my-e6m12")
    acc = load_accelerator(EXAMPLES / "my-acc.yaml")
    assert acc.narrow == fmt and acc.narrow_rounding == "rz"


def test_tour_end_to_end(tmp_path, capsys):
    work = tmp_path / "tour"
    _export_module().export(work)
    assert main(["import-onnx", str(work / "digits.onnx"), "--inputs", str(work / "X.npy"),
                 "--labels", str(work / "Y.npy"), "--out", str(work / "digits")]) == 0
    capsys.readouterr()
    assert main(["simulate", str(work / "digits"), "--accelerator",
                 str(EXAMPLES / "my-acc.yaml"), "--limit", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_samples"] == 60 and out["narrow"] == "my-e6m12"
    # the tour's sweep spec, pointed at this test's trace and cut down
    spec = yaml.safe_load((EXAMPLES / "sweep.yaml").read_text())
    for f in ("my-acc.yaml", "my-e6m12.yaml"):
        shutil.copy(EXAMPLES / f, tmp_path / f)
    spec["grid"]["traces"] = [str(work / "digits")]
    spec["grid"]["narrow"] = spec["grid"]["narrow"][:2]
    spec["grid"]["taus"] = spec["grid"]["taus"][:1]
    spec["limit"] = 60
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    runs = tmp_path / "runs"
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(runs)]) == 0
    lines = (runs / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4           # 2 narrow formats x (2 uniform + 2 budgeted)
    assert main(["report", str(runs)]) == 0
    assert (runs / "report.md").read_text().startswith("#")
    assert (runs / "energy_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
