"""The fast layers (models/layers.py, pooling.py) against their plain formulations, in one process.

  python benchmarks/ab_layers.py --config=configs/segnet.py --batch=8 \
      --set model.widths="(16,32,64,128,128)" [--set model.skip=True ...] \
      [--plain=conv,channel_sum] [--bf16] --out=ab.json

Compiles the train step (the one --mode=benchmark times) of the same SegNet twice, once with
models/reference.py's plain formulations of the rewrites named by --plain (default: all) swapped
in, and times the two alternately (A, B, A, B, ...) so that both see the same machine load;
writes both medians and plain / fast.
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.compare_torch import load_config  # noqa: E402
from octseg_jax.modes import benchmark  # noqa: E402
from octseg_jax.training import train
from octseg_jax.outputs.atomic import write_json  # noqa: E402
from octseg_jax.models import create_model, reference  # noqa: E402
from octseg_jax.learning.task import Task  # noqa: E402


def compiled_step(config, x, y):
  """(compiled train step, initial state) of the config's model as the segnet module is now."""
  model = create_model(config.model, config.train.compute_dtype)
  state = train.create_state(config, model, x.shape[1:], jax.random.key(0))
  step = jax.jit(train.make_train_step(model, Task.from_config(config), config.data.augment))
  step = step.lower(state, x, y, jax.random.key(1))
  return step.compile(), state


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True)
  p.add_argument("--batch", type=int, required=True)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--set", action="append", default=[], help="field=value (Python literal)")
  p.add_argument("--plain", default=",".join(reference.REWRITES),
                 help="comma-separated rewrites to undo in the plain step, of: "
                 + ", ".join(reference.REWRITES))
  p.add_argument("--bf16", action="store_true",
                 help="also time the fast layers with train.compute_dtype=bfloat16")
  p.add_argument("--out", required=True)
  a = p.parse_args()
  rewrites = [r for r in a.plain.split(",") if r]
  unknown = sorted(set(rewrites) - set(reference.REWRITES))
  if unknown:
    p.error(f"--plain: unknown rewrite(s) {', '.join(unknown)}; "
            f"known: {', '.join(reference.REWRITES)}")
  config = load_config(a.config, a.set, {"benchmark.batch_size": a.batch})
  shape = benchmark.model_input_shape(config)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(a.batch,) + shape).astype(np.float32))
  y = jnp.asarray(rng.integers(0, config.model.num_classes, (a.batch,) + shape).astype(np.uint8))
  steps = {"fast": compiled_step(config, x, y)}
  with reference.plain_segnet(rewrites):
    steps["plain"] = compiled_step(config, x, y)
  if a.bf16:
    from octseg_jax.config.paths import apply_overrides
    steps["fast_bf16"] = compiled_step(
        apply_overrides(config, {"train.compute_dtype": "bfloat16"}), x, y)
  times = {k: [] for k in steps}
  for r in range(a.rounds + 1):                     # round 0 is warm-up
    for name, (fn, state) in steps.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(state, x, y, jax.random.key(1)))
      if r:
        times[name].append(time.perf_counter() - t)
  med = {k: statistics.median(v) for k, v in times.items()}
  result = {"model": dict(config.model), "batch": a.batch, "plain_rewrites": rewrites,
            "input_shape": list(shape),
            "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average": os.getloadavg(), "rounds": a.rounds, "times_s": times,
            "median_s": med, "plain_over_fast": med["plain"] / med["fast"]}
  if a.bf16:
    result["fast_over_fast_bf16"] = med["fast"] / med["fast_bf16"]
    print(f"bfloat16 compute: {med['fast_bf16']:.3f} s, float32 / bfloat16 = "
          f"{result['fast_over_fast_bf16']:.2f}")
  print(f"train step: fast {med['fast']:.3f} s, plain ({', '.join(rewrites)}) "
        f"{med['plain']:.3f} s, "
        f"plain / fast = {result['plain_over_fast']:.2f} (load {os.getloadavg()[0]:.1f})")
  write_json(a.out, result)


if __name__ == "__main__":
  main()
