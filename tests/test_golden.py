"""The golden check of the redesign issue (tests/golden_outputs.py): predictions of
pretrained/ on two fixed input files, the tiny config's log.csv for 3 epochs, and explain's
cam_stats on a fixed input, against the stored outputs in tests/golden/."""

import csv
import json
import os
import shutil

import numpy as np

import golden_outputs as golden

WRITE = os.environ.get("OCTSEG_WRITE_GOLDEN") == "1"


def _compare_numbers(got, want, where=""):
  """Nested dicts/lists of numbers and strings: equal strings and keys, numbers at rtol 1e-4
  (NaN equals NaN)."""
  if isinstance(want, dict):
    assert set(got) == set(want), where
    for k in want:
      _compare_numbers(got[k], want[k], f"{where}.{k}")
  elif isinstance(want, list):
    assert len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want)):
      _compare_numbers(g, w, f"{where}[{i}]")
  elif isinstance(want, (int, float)) and not isinstance(want, bool):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7, err_msg=where)
  else:
    assert got == want, where


def test_pretrained_predictions_are_golden(tmp_path):
  got = golden.predictions(str(tmp_path))
  path = os.path.join(golden.GOLDEN, "pretrained_predictions.npz")
  if WRITE:
    os.makedirs(golden.GOLDEN, exist_ok=True)
    np.savez_compressed(path, **got)
  with np.load(path) as want:
    assert set(want.files) == set(got)
    for key in want.files:
      if want[key].dtype == np.uint8:
        assert got[key].shape == want[key].shape
        assert np.mean(got[key] != want[key]) <= golden.GOLDEN_FLIPS, key
      else:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-3, err_msg=key)


def test_tiny_training_log_and_explain_stats_are_golden(trained_workdir, tmp_path):
  workdir = trained_workdir[0]
  log = os.path.join(golden.GOLDEN, "tiny_log.csv")
  stats = golden.explain_stats(workdir, str(tmp_path))
  stats_path = os.path.join(golden.GOLDEN, "explain_cam_stats.json")
  if WRITE:
    shutil.copyfile(os.path.join(workdir, "log.csv"), log)
    with open(stats_path, "w") as f:
      json.dump(stats, f, indent=1)
  got = list(csv.DictReader(open(os.path.join(workdir, "log.csv"))))
  with open(os.path.join(workdir, "log.csv"), newline="") as f:
    assert "\r" not in f.read()                           # Unix line ends
  assert got[0]["lr"] == "0.01"       # the float32 rate as typed, not 0.009999999776482582
  want = list(csv.DictReader(open(log)))
  assert [list(r) for r in got] == [list(r) for r in want]
  for g, w in zip(got, want):
    _compare_numbers({k: float(v) for k, v in g.items() if k != "seconds"},
                     {k: float(v) for k, v in w.items() if k != "seconds"})
  _compare_numbers(_stable(json.loads(json.dumps(stats))), _stable(json.load(open(stats_path))))


def _stable(tree):
  """cam_stats without what differs between identical runs: timings (keys timing*, *_s) and
  the settings that name temporary paths."""
  if isinstance(tree, dict):
    return {k: _stable(v) for k, v in tree.items()
            if not (k.startswith("timing") or k.endswith("_s") or k == "settings")}
  if isinstance(tree, list):
    return [_stable(v) for v in tree]
  return tree
