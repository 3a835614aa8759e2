"""Where a training step spends its time: XLA's own per-operation trace, summed by operation.

  python benchmarks/profile_step.py --config=configs/segnet.py --batch=2 \
      --set model.widths="(16,32,64,128,128)" --set model.skip=True \
      --set model.upsample=transpose [--set data.recipe.resize_to="(128,128)"] --out=prof.json

Runs the jitted train step (the one --mode=benchmark times) under jax.profiler with a Perfetto
trace, sums the duration of every executed HLO operation (thunk) over `--steps` steps, and prints
the top operations with their share of the summed operation time and their HLO opcode, plus the
share per opcode family. On CPU the operation events are what XLA's thunk executor records.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

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
from octseg_jax.models import create_model  # noqa: E402
from octseg_jax.learning.task import Task  # noqa: E402

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S.*? ([a-z][\w\-]*)\(")


def opcodes(hlo_text: str) -> dict:
  """Instruction name -> opcode of the entry and called computations of compiled HLO text;
  fusions as 'fusion:<kind>' named after the fusion (XLA names them after what they fuse)."""
  ops, sources = {}, {}
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      name, op = m.groups()
      if op == "fusion":
        kind = re.search(r"kind=(\w+)", line)
        op = f"fusion:{kind.group(1) if kind else '?'}"
      elif op == "custom-call":
        target = re.search(r'custom_call_target="([^"]+)"', line)
        op = f"custom-call:{target.group(1) if target else '?'}"
      ops[name] = op
      where = re.search(r'op_name="([^"]+)"', line)
      if where:
        sources[name] = where.group(1)[-90:]
  return ops, sources


def family(name: str, op: str) -> str:
  """Coarse class of an operation: convolution, transpose/copy, reduce, scatter/gather, dot,
  elementwise fusion or other (from its opcode and, for fusions, its name)."""
  text = f"{name} {op}".lower()
  for fam, keys in (("convolution", ("convolution", "conv", "onednn")),
                    ("dot", ("dot",)), ("scatter/gather", ("scatter", "gather", "select-and")),
                    ("reduce", ("reduce",)), ("transpose/copy", ("transpose", "copy"))):
    if any(k in text for k in keys):
      return fam
  return "elementwise fusion" if op.startswith("fusion") else "other"


def op_times(trace_dir: str, names: dict) -> collections.Counter:
  """Summed microseconds per HLO instruction from the Perfetto trace in trace_dir."""
  path = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)[0]
  with gzip.open(path) as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in names:
      total[e["name"]] += e.get("dur", 0.0)
  return total


def profile(config, steps: int) -> dict:
  """Top operations of the config's train step: {'ops': [...], 'families': {...}, ...}."""
  batch = int(config.benchmark.batch_size)
  shape = benchmark.model_input_shape(config)
  model = create_model(config.model, config.train.compute_dtype)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(batch,) + shape).astype(np.float32))
  y = jnp.asarray(rng.integers(0, config.model.num_classes, (batch,) + shape).astype(np.uint8))
  state = train.create_state(config, model, shape, jax.random.key(0))
  key = jax.random.key(1)
  step = train.make_train_step(model, Task.from_config(config), config.data.augment)
  compiled = jax.jit(step).lower(state, x, y, key).compile()
  names, sources = opcodes(compiled.as_text())
  jax.block_until_ready(compiled(state, x, y, key))
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(compiled(state, x, y, key))
    times = op_times(tmp, names)
  total = sum(times.values())
  fams = collections.Counter()
  for name, t in times.items():
    fams[family(name, names[name])] += t
  ops = [{"name": n, "op": names[n], "family": family(n, names[n]), "ms_per_step": t / steps / 1e3,
          "share": t / total, "source": sources.get(n, "")} for n, t in times.most_common()]
  return {"batch": batch, "input_shape": list(shape), "model": dict(config.model),
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__,
          "op_ms_per_step": total / steps / 1e3, "ops": ops,
          "families": {k: v / total for k, v in fams.most_common()}}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True)
  p.add_argument("--batch", type=int, required=True)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--top", type=int, default=15)
  p.add_argument("--set", action="append", default=[], help="field=value (Python literal)")
  p.add_argument("--out")
  a = p.parse_args()
  config = load_config(a.config, a.set, {"benchmark.batch_size": a.batch})
  result = profile(config, a.steps)
  print(f"summed op time {result['op_ms_per_step']:.1f} ms/step; by family: " + ", ".join(
      f"{k} {100 * v:.0f}%" for k, v in result["families"].items()))
  for op in result["ops"][:a.top]:
    print(f"{100 * op['share']:5.1f}%  {op['ms_per_step']:8.2f} ms  {op['family']:18s} "
          f"{op['op']:24s} {op['name']}  {op['source']}")
  if a.out:
    write_json(a.out, {**result, "ops": result["ops"][:50], "ops_kept": "top 50 by time"})


if __name__ == "__main__":
  main()
