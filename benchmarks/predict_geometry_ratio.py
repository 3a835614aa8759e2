"""Geometry of predict, this checkout against an older one, side by side in one process.

Both compute the topology-fixed labels and sub-pixel boundaries of the same random class
probabilities (8 scans of 496 x 512); the outputs must be identical. Prints seconds per scan
(medians of 3) and their ratio with the load average (the machine may be shared).

  git archive 01896d8 | tar -x -C runs/base_src
  python benchmarks/predict_geometry_ratio.py --old=runs/base_src
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--old", required=True, help="root of the older checkout")
  args = parser.parse_args()
  from octseg_jax.modes import predict
  spec = importlib.util.spec_from_file_location(
      "old_geometry", os.path.join(args.old, "octseg_jax", "layers_geometry.py"))
  old = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(old)
  probs = np.random.default_rng(0).dirichlet(np.ones(8) * 0.2, size=(8, 496, 512))
  probs = probs.astype(np.float32)                                       # [8, H, W, K]

  def run_old():
    ordered = [old.enforce_topology(np.log(np.clip(p, 1e-7, 1)))[0] for p in probs]
    return np.stack([old.boundaries_from_probs(p, o) for p, o in zip(probs, ordered)]), ordered

  def run_new():
    g = predict.GEOMETRY_SCANS
    parts = [predict.batch_geometry(probs[i:i + g]) for i in range(0, len(probs), g)]
    return (np.concatenate([p["boundaries"] for p in parts]),
            np.concatenate([p["pred_ordered"] for p in parts]))

  t_old, t_new = [], []
  for _ in range(3):
    start = time.perf_counter()
    bounds_old, ordered_old = run_old()
    t_old.append(time.perf_counter() - start)
    start = time.perf_counter()
    bounds_new, ordered_new = run_new()
    t_new.append(time.perf_counter() - start)
  assert (np.stack(ordered_old) == ordered_new).all()
  assert np.array_equal(bounds_old, bounds_new, equal_nan=True)
  print(json.dumps({"old_s_per_scan": round(float(np.median(t_old)) / len(probs), 4),
                    "new_s_per_scan": round(float(np.median(t_new)) / len(probs), 4),
                    "new_over_old": round(float(np.median(t_new) / np.median(t_old)), 3),
                    "load_average": [round(v, 2) for v in os.getloadavg()]}))


if __name__ == "__main__":
  main()
