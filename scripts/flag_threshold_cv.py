"""Chooses a column flag's threshold by cross-validation, from evals of fold models on their own
held-out subjects (no model is run here: it reads eval's metrics.json).

  python scripts/flag_threshold_cv.py --output=docs/results/flag_threshold/cv.json \\
      --set=members:docs/results/position_sd/member_fold0/metrics.json,... [--set=...]

Each --set is one recipe's fold models, one metrics.json per fold (its folder names the fold),
each scored by --mode=eval on subjects the model never saw. For each flag the evals carry
(calibration.NAME_columns_curve: `uncertain`, the members' spread; `position_sd`, each
boundary's position sd), a column counts as wrong where its boundaries are off by more than
the curve's wrong_um (uncertainty.WRONG_UM) on average, and each fold's threshold is the one
with the highest F1 of finding the wrong columns over the set's other folds pooled
(leave-one-fold-out), read on the fold itself; `chosen_um` is the threshold with the highest
F1 over all folds pooled (the setting to ship), and `current` reads each fold at the threshold
its eval flagged at.
The output JSON is written atomically with provenance. Bad input: one line, exit status 2.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import named_sets  # noqa: E402
from octseg_jax.errors import InputError  # noqa: E402
from octseg_jax.learning import uncertainty  # noqa: E402
from octseg_jax.outputs.atomic import check_output_file, write_json  # noqa: E402

FLAGS = ("uncertain", "position_sd")          # calibration.NAME_columns_curve in metrics.json


def parse_sets(texts) -> dict:
  """['NAME:M.json,M.json', ...] -> {NAME: {fold: metrics}} (fold = the file's folder name;
  names unique, folds distinct, every file a readable eval metrics.json with a flag curve)."""
  sets = {}
  for name, paths in named_sets.parse(texts, "METRICS_JSON").items():
    folds = {}
    for path in paths:
      fold = os.path.basename(os.path.dirname(os.path.abspath(path)))
      if fold in folds:
        raise InputError(f"--set={name}:...: two files share the folder name {fold}")
      folds[fold] = read_metrics(path)
    check_disjoint(name, folds)
    sets[name] = folds
  return sets


def read_metrics(path: str) -> dict:
  """An eval metrics.json with at least one flag curve, or InputError naming the file."""
  try:
    with open(path) as f:
      metrics = json.load(f)
  except OSError as e:
    raise InputError(f"{path}: cannot be read ({e.strerror})") from None
  except ValueError as e:
    raise InputError(f"{path}: not JSON ({e})") from None
  cal = metrics.get("calibration") if isinstance(metrics, dict) else None
  if not isinstance(cal, dict) or not any(f"{f}_columns_curve" in cal for f in FLAGS):
    raise InputError(f"{path}: no calibration.*_columns_curve (an eval metrics.json from "
                     "a commit whose eval writes flag curves?)")
  return metrics


def check_disjoint(name: str, folds: dict) -> None:
  """Refuses a set whose evals share a subject (per_subject_mean_layer_dice's keys)."""
  seen = {}
  for fold, metrics in folds.items():
    for subject in metrics.get("per_subject_mean_layer_dice", {}):
      if subject in seen:
        raise InputError(f"--set={name}: {fold} and {seen[subject]} both score subject "
                         f"{subject}; a set's folds must be scored on different subjects")
      seen[subject] = fold


def cross_validate(curves: dict) -> dict:
  """{fold: flag_curve} -> per fold the threshold chosen on the other folds pooled and its
  stats on the fold, the pooled held-out stats, and the threshold chosen on all folds."""
  folds = list(curves)
  out = {"per_fold": {}}
  for fold in folds:
    others = uncertainty.pool_curves([curves[f] for f in folds if f != fold])
    index = uncertainty.best_flag_index(others)
    out["per_fold"][fold] = {"chosen_on_others": uncertainty.flag_stats(others, index),
                             "held_out": uncertainty.flag_stats(curves[fold], index)}
  held_out = [v["held_out"] for v in out["per_fold"].values()]
  out["held_out_mean"] = {k: float(np.nanmean([h[k] for h in held_out])) for k in held_out[0]
                          if k != "threshold_um"}                # each fold's own threshold
  pooled = uncertainty.pool_curves(list(curves.values()))
  out["all_folds"] = uncertainty.flag_stats(pooled, uncertainty.best_flag_index(pooled))
  out["chosen_um"] = out["all_folds"]["threshold_um"]
  return out


def flag_summary(name: str, folds: dict, flag: str) -> dict:
  """One flag of set `name`: each fold at its eval's own threshold (`current`) and, with two
  or more folds, cross_validate's choice (None for one fold)."""
  curves = {f: m["calibration"][f"{flag}_columns_curve"] for f, m in folds.items()}
  current = {}
  for fold, m in folds.items():
    at = m["calibration"][f"{flag}_columns"]["threshold_um"]
    index = np.flatnonzero(np.isclose(curves[fold]["thresholds_um"], at, rtol=0, atol=1e-9))
    if not index.size:
      raise InputError(f"--set={name}:...: {fold}'s {flag} curve lacks its own threshold {at:g}")
    current[fold] = uncertainty.flag_stats(curves[fold], int(index[0]))
  try:
    cv = cross_validate(curves) if len(curves) > 1 else None
  except ValueError as e:
    raise InputError(f"--set={name}:...: {flag}: {e}") from None
  return {"wrong_um": next(iter(curves.values()))["wrong_um"], "current": current, "cv": cv}


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--output", required=True, help="the JSON to write")
  p.add_argument("--set", action="append", default=[], help="NAME:METRICS_JSON,...")
  a = p.parse_args(argv)
  start = time.perf_counter()
  from octseg_jax.runtime import provenance
  record = provenance.collect()
  try:
    check_output_file(a.output)
    sets = parse_sets(a.set)
    if not sets:
      raise InputError("--set: give at least one NAME:METRICS_JSON,... set of fold evals")
    result = {"criterion": "F1 of finding the columns whose boundaries are off by more than "
                           "wrong_um on average, leave-one-fold-out", "sets": {}}
    for name, folds in sets.items():
      flags = [f for f in FLAGS if all(f"{f}_columns_curve" in m["calibration"]
                                       for m in folds.values())]
      result["sets"][name] = {
          "workdirs": {f: m.get("workdir") for f, m in folds.items()},
          "smooth_sd_columns": {f: m.get("topology", {}).get("smooth_sd_columns")
                                for f, m in folds.items()},
          "flags": {f: flag_summary(name, folds, f) for f in flags}}
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  result["provenance"] = record | {"wall_time_s": time.perf_counter() - start}
  write_json(a.output, result)
  for name, s in result["sets"].items():
    for flag, f in s["flags"].items():
      cv = f["cv"]
      print(f"{name} {flag}: " + ("one fold, no threshold chosen" if cv is None else
            f"chosen {cv['chosen_um']:g} um; held-out F1 {cv['held_out_mean']['f1']:.3f}"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
