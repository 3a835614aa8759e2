"""The A/B and profile benchmark scripts run against the current training step (they build it
themselves, so an API change there must not leave them broken): a tiny SegNet, one round."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT  # noqa: E402
TINY = ["--config=configs/segnet.py", "--batch=1", "--set", "model.widths=(4,8)",
        "--set", "data.recipe.resize_to=(16,16)"]


def _run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ab_layers_times_both_steps_of_the_named_rewrites(tmp_path):
  out = tmp_path / "ab.json"
  r = _run("ab_layers.py", *TINY, "--rounds=1", "--plain=conv,channel_sum", f"--out={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result["plain_rewrites"] == ["conv", "channel_sum"]
  assert len(result["times_s"]["plain"]) == len(result["times_s"]["fast"]) == 1
  assert result["plain_over_fast"] == pytest.approx(
      result["median_s"]["plain"] / result["median_s"]["fast"])


def test_ab_layers_names_an_unknown_rewrite(tmp_path):
  r = _run("ab_layers.py", *TINY, "--plain=conv,nonsense", f"--out={tmp_path / 'ab.json'}")
  assert r.returncode == 2
  assert "--plain: unknown rewrite(s) nonsense" in r.stderr
  assert not (tmp_path / "ab.json").exists()


def test_profile_step_sums_the_step_operations(tmp_path):
  out = tmp_path / "profile.json"
  r = _run("profile_step.py", *TINY, "--steps=1", f"--out={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result["op_ms_per_step"] > 0
  assert sum(result["families"].values()) == pytest.approx(1.0)
