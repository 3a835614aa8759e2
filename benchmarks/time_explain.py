"""Cost of --mode=explain's default (maps and statistics) against prediction, per scan, in one
process: for each scan, the prediction forward pass (batch 1) and the default explanation are
timed alternately (after one compile run each); median over rounds, wall and CPU seconds.

  python benchmarks/time_explain.py --workdir=pretrained \
      --input=../shared/data/duke_dme_chiu2015/subject_01.npz --scans=4 --rounds=3
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from octseg_jax.modes import explain  # noqa: E402
from octseg_jax.data import inputs  # noqa: E402
from octseg_jax.serving import inference  # noqa: E402


def timed(fn):
  w, c = time.perf_counter(), time.process_time()
  jax.block_until_ready(fn())
  return time.perf_counter() - w, time.process_time() - c


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="pretrained")
  p.add_argument("--input", required=True)
  p.add_argument("--scans", type=int, default=4)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--layers", default="", help="default: the workdir's explain.layers")
  p.add_argument("--method", default="", help="default: the workdir's explain.method")
  a = p.parse_args()
  trained = inference.load_trained(a.workdir)
  cfg = trained.config.explain
  layers = tuple(a.layers.split(",")) if a.layers else tuple(cfg.layers)
  method = a.method or cfg.method
  ex = explain.make_explainer(trained, layers, method, cfg.target)
  scans = inputs.load_path(a.input)[0]
  xs = [inference.prepare(trained, scans.images[i])[0][None]
        for i in range(min(a.scans, len(scans)))]
  predict = lambda x: trained.logits_fn(trained.variables, x)
  timed(lambda: predict(xs[0]))
  timed(lambda: ex.explain(xs[0]))
  rows = []
  for _ in range(a.rounds):
    for x in xs:
      rows.append(timed(lambda: predict(x)) + timed(lambda: ex.explain(x)))
  rows = np.asarray(rows)                     # [n, 4]: predict wall, cpu, explain wall, cpu
  med = np.median(rows, axis=0)
  result = {"layers": list(layers), "method": method, "scans": len(xs),
            "input_shape": list(xs[0].shape[1:]), "rounds": a.rounds,
            "predict_wall_s": med[0], "predict_cpu_s": med[1],
            "explain_wall_s": med[2], "explain_cpu_s": med[3],
            "ratio_wall": float(np.median(rows[:, 2] / rows[:, 0])),
            "ratio_cpu": float(np.median(rows[:, 3] / rows[:, 1])),
            "load_average": os.getloadavg()}
  print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
  main()
