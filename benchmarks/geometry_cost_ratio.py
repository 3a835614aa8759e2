"""predict's per-scan geometry (modes.predict.batch_geometry), this checkout against an older
one of the same layout, side by side in one process on the same class probabilities (8 scans of
496 x 512): labels and boundaries must be identical. Prints seconds per scan (medians of
REPEATS, in turn) and their ratio with the load average, and writes them to --out as JSON.

  git archive ad603dd | tar -x -C runs/base_src
  python benchmarks/geometry_cost_ratio.py --old=runs/base_src --old_commit=ad603dd --out=F.json
"""

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPEATS = 11           # each side timed in turn, medians


def load_predict(root: str):
  """octseg_jax.modes.predict of the checkout at `root` (its own octseg_jax package)."""
  for name in [m for m in sys.modules if m == "octseg_jax" or m.startswith("octseg_jax.")]:
    del sys.modules[name]
  sys.path.insert(0, root)
  try:
    return importlib.import_module("octseg_jax.modes.predict")
  finally:
    sys.path.remove(root)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--old", required=True, help="root of the older checkout")
  parser.add_argument("--old_commit", required=True, help="the commit --old was archived from")
  parser.add_argument("--out", required=True, help="JSON file to write")
  args = parser.parse_args()
  old, new = load_predict(os.path.abspath(args.old)), load_predict(ROOT)
  probs = np.random.default_rng(0).dirichlet(np.ones(8) * 0.2, size=(8, 496, 512))
  probs = probs.astype(np.float32)                                       # [8, H, W, K]
  times = {"old": [], "new": []}
  outs = {}
  for _ in range(REPEATS):
    for name, module in (("old", old), ("new", new)):
      start = time.perf_counter()
      outs[name] = [module.batch_geometry(p[None], 6.0) for p in probs]
      times[name].append(time.perf_counter() - start)
  for key in ("pred_ordered", "boundaries", "supported"):
    assert all(np.array_equal(a[key], b[key], equal_nan=True)
               for a, b in zip(outs["old"], outs["new"])), key
  head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
  result = {"old_commit": args.old_commit, "new_commit": head, "scans": len(probs),
            "smooth_sd_columns": 6.0, "repeats": REPEATS,
            "old_s_per_scan": round(float(np.median(times["old"])) / len(probs), 4),
            "new_s_per_scan": round(float(np.median(times["new"])) / len(probs), 4),
            "new_over_old": round(float(np.median(times["new"]) / np.median(times["old"])), 3),
            "new_keys": sorted(set(outs["new"][0]) - set(outs["old"][0])),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cpus": os.cpu_count()}
  print(json.dumps(result))
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
