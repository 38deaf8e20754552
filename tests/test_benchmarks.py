"""The bAbI table ends with the JSON line its callers parse: a tiny run of it, end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnbook.data import babi
from attnbook.data.files import find_data

ROOT = Path(__file__).resolve().parents[1]


def last_json_line(args: list[str]) -> dict:
    """Run a benchmark script with ``args`` and parse the last line it prints."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(find_data(f"babi/en/{babi.task_file(1, 'train')}", babi.SHA256[babi.task_file(1, "train")]) is None,
                    reason="real bAbI files not in ATTNBOOK_DATA")
def test_babi_table_ends_with_its_json_line():
    result = last_json_line(["benchmarks/babi_table.py", "--tasks", "1", "--restarts", "2", "--epochs", "1",
                             "--linear-epochs", "1", "--jobs", "1"])
    assert set(result) >= {"mean_error", "failed_tasks", "seconds"}
    assert 0.0 <= result["mean_error"] <= 100.0 and result["failed_tasks"] in (0, 1) and result["seconds"] > 0
