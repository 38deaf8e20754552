"""The attention-scaling benchmark's measuring parts, on sizes small enough for a unit test."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of scripts
from benchmarks.attention_scaling import CASES, fitted_exponent, main, run_case


def test_fitted_exponent_recovers_a_power_law():
    sizes = [256, 1024, 2048, 4096]
    assert fitted_exponent(sizes, [3e-9 * n**2 for n in sizes]) == pytest.approx(2.0)
    assert fitted_exponent(sizes, [1e-6 * n for n in sizes], min_n=1024) == pytest.approx(1.0)
    assert fitted_exponent(sizes, [1.0, 2.0, None, 8.0]) == pytest.approx(math.log(4) / math.log(4))


@pytest.mark.parametrize("case", CASES)
def test_run_case_reports_time_and_memory(case):
    result = run_case(case, 300, repeats=2)
    assert result["seconds"] >= 0 and math.isfinite(result["mib"])


def test_main_prints_the_json_contract(capsys, monkeypatch):
    import benchmarks.attention_scaling as bench

    monkeypatch.setattr(bench, "measure", lambda case, n, repeats: {"seconds": n * 1e-6, "mib": n / 1e3})
    main(["--sizes", "256", "1024", "2048", "--max-mib", "20"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = ["n"] + [f"{c}_s" for c in CASES] + [f"{c}_mib" for c in CASES]
    assert list(result) == keys
    assert result["n"] == [256, 1024, 2048]
    assert all(len(result[k]) == 3 for k in keys)
    assert result["naive_s"][-1] is None and result["naive_mib"][-1] is None  # above --max-mib: skipped
    assert result["naive_s"][1] == pytest.approx(1024e-6) and result["tiled_s"][-1] == pytest.approx(2048e-6)
    assert math.isnan(fitted_exponent([1024], [1.0]))
