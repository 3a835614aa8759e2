"""Compile time of one training step without and with the persistent compilation cache.

Each measurement runs in a fresh Python process (so nothing is cached in memory): first with
an empty cache folder, then again with the folder the first run filled. Writes OUT/
compile_cache.json (with provenance.json beside it).

  python benchmarks/measure_compile_cache.py --out=docs/results/cpu_2core \
      --set model.widths=16,32,64,128,128 --set model.upsample=transpose --set model.skip=True
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()   # here too, so that provenance.json records the children's flags

CHILD = r"""
import json, os, sys, time
from octseg_jax.runtime import xla_setup
xla_setup.apply_cpu_flags()
import jax
from configs import segnet
from octseg_jax.modes import benchmark
from octseg_jax.modes import cli
from octseg_jax.training import train
from octseg_jax.config.paths import apply_overrides
from octseg_jax.models import create_model
cache, batch, overrides = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
cli.enable_compilation_cache(cache)
config = apply_overrides(segnet.get_config(), overrides)
shape = benchmark.model_input_shape(config)
model = create_model(config.model, config.train.compute_dtype)
state = train.create_state(config, model, shape, jax.random.key(0))
x = jax.numpy.zeros((batch,) + shape, jax.numpy.float32)
y = jax.numpy.zeros((batch,) + shape, jax.numpy.uint8)
step = jax.jit(train.make_train_step(model, config), donate_argnums=(0,))
t = time.perf_counter()
step.lower(state, x, y, jax.random.key(1)).compile()
print(json.dumps({"compile_s": time.perf_counter() - t, "input_shape": list(shape),
                  "xla_flags": os.environ.get("XLA_FLAGS", "")}))
"""


def parse_value(text: str):
  """'16,32' -> (16, 32); 'True' -> True; '3' -> 3; else the string."""
  if "," in text:
    return tuple(parse_value(t) for t in text.split(","))
  if text in ("True", "False"):
    return text == "True"
  try:
    return int(text)
  except ValueError:
    return text


def compile_once(cache: str, batch: int, overrides: dict) -> dict:
  out = subprocess.run([sys.executable, "-c", CHILD, cache, str(batch), json.dumps(overrides)],
                       cwd=ROOT, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  from octseg_jax.runtime import provenance
  from octseg_jax.outputs.atomic import write_json
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--set", action="append", default=[], help="config override a.b=v")
  args = parser.parse_args()
  overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
  start = time.time()
  with tempfile.TemporaryDirectory() as cache:
    cold = compile_once(cache, args.batch, overrides)
    warm = compile_once(cache, args.batch, overrides)
  result = {"what": "train-step lower+compile in a fresh process: empty cache, then the filled "
                    "cache", "config": "configs/segnet.py", "overrides": overrides,
            "batch": args.batch, "input_shape": cold["input_shape"],
            "uncached_compile_s": cold["compile_s"], "cached_compile_s": warm["compile_s"],
            "xla_flags": cold["xla_flags"],
            "load_average": os.getloadavg()}
  write_json(os.path.join(args.out, "compile_cache.json"), result)
  provenance.write(args.out, wall_time_s=time.time() - start,
                   filename="compile_cache_provenance.json")
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
