"""Side-by-side step times of the CPU recipe (configs/duke_cpu_fast.py: training on 224 x 256
column crops) against full-width training (configs/duke_cpu.py inputs, 224 x 560), in one
process and interleaved so that both see the same machine load; plus the full-width evaluation
forward pass that every epoch also runs. Writes OUT/crop_speed.json (+ provenance.json).

  python benchmarks/measure_crop_speed.py --out=docs/results/cpu_2core --rounds=5
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import duke_cpu_fast  # noqa: E402
from octseg_jax.data import duke  # noqa: E402
from octseg_jax.runtime import provenance  # noqa: E402
from octseg_jax.training import train
from octseg_jax.outputs.atomic import write_json  # noqa: E402
from octseg_jax.models import create_model  # noqa: E402
from octseg_jax.learning.task import Task  # noqa: E402



def timed(fn):
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  load_before = os.getloadavg()
  config = duke_cpu_fast.get_config()
  model = create_model(config.model)
  task = Task.from_config(config)
  rng = np.random.default_rng(0)
  b = config.train.batch_size
  x = jax.numpy.asarray(rng.uniform(size=(b,) + duke.TRAINING_INPUT).astype(np.float32))
  y = jax.numpy.asarray(rng.integers(0, 8, size=(b,) + duke.TRAINING_INPUT).astype(np.uint8))
  full_aug = config.data.augment.copy_and_resolve_references()
  full_aug.crop_width = 0
  steps = {"crop_256": jax.jit(train.make_train_step(model, task, config.data.augment)),
           "full_width": jax.jit(train.make_train_step(model, task, full_aug))}
  states = {k: train.create_state(config, model, duke.TRAINING_INPUT, jax.random.key(0))
            for k in steps}
  xe = x[:1].repeat(config.train.eval_batch_size, 0)
  ye = y[:1].repeat(config.train.eval_batch_size, 0)
  eval_fn = jax.jit(train.make_eval_step(model, task))
  variables = {"params": states["full_width"].params,
               "batch_stats": states["full_width"].batch_stats}
  times = {k: [] for k in list(steps) + ["eval_batch_full_width"]}
  for r in range(args.rounds + 1):                     # round 0 compiles (not counted)
    for k, step in steps.items():
      s = timed(lambda: step(states[k], x, y, jax.random.key(r)))
      if r:
        times[k].append(s)
    s = timed(lambda: eval_fn(variables, xe, ye))
    if r:
      times["eval_batch_full_width"].append(s)
  med = {k: statistics.median(v) for k, v in times.items()}
  result = {"input_shape": list(duke.TRAINING_INPUT), "batch_size": b,
            "eval_batch_size": config.train.eval_batch_size, "rounds": args.rounds,
            "seconds": times, "median_s": med,
            "crop_over_full_step_ratio": med["crop_256"] / med["full_width"],
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "device": "2-core dev machine (shared), jax " + jax.__version__}
  os.makedirs(args.out, exist_ok=True)
  write_json(os.path.join(args.out, "crop_speed.json"), result)
  provenance.write(args.out, config, filename="crop_speed_provenance.json",
                   extra={"script": "measure_crop_speed.py"})
  print(result["median_s"], "ratio", round(result["crop_over_full_step_ratio"], 3),
        "load", load_before, os.getloadavg())


if __name__ == "__main__":
  main()
