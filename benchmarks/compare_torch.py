"""octseg_jax and the same SegNet in PyTorch, timed in one run, with the ratio (optional).

  python benchmarks/compare_torch.py --config=configs/segnet.py --batch=4 --out=compare.json \
      [--set model.skip=True --set model.upsample=transpose --set model.widths="(16,32,64,128,128)"]

Writes {"octseg_jax": benchmark.json fields, "pytorch": torch_segnet.py fields,
"pytorch_over_ours": PyTorch step time / ours, "rounds": [...]} (> 1 means octseg_jax is
faster); with --rounds=R the two are timed R times, alternating, and the round with the median
ratio is the one reported. Without torch it says so and writes only the octseg_jax part.
"""

import argparse
import ast
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax.runtime import xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()

from octseg_jax.modes import benchmark  # noqa: E402
from octseg_jax.config.paths import apply_overrides  # noqa: E402
from octseg_jax.outputs.atomic import write_json  # noqa: E402


def load_config(path: str, settings, fixed: dict):
  """The config in the file at `path` with `settings` ('field=value', a Python literal or a
  plain string) and then `fixed` ({field: value}) applied."""
  spec = importlib.util.spec_from_file_location("cfg", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  overrides = {}
  for item in settings:
    key, value = item.split("=", 1)
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value
  overrides.update(fixed)
  return apply_overrides(module.get_config(), overrides)


def torch_step(config, input_shape, a):
  """benchmarks/torch_segnet.py's numbers for the config's model, or None (and a line saying
  why) where PyTorch is not installed or the run fails."""
  h, w = input_shape
  cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "torch_segnet.py"),
         "--widths", ",".join(str(v) for v in config.model.widths), "--batch", str(a.batch),
         "--size", f"{h},{w}", "--upsample", config.model.upsample,
         "--steps", str(a.steps), "--warmup", str(a.warmup)]
  cmd += ["--skip"] if config.model.skip else []
  out = subprocess.run(cmd, capture_output=True, text=True)
  last = (out.stdout.strip().splitlines() or [""])[-1]
  if last.startswith("{"):
    return json.loads(last)
  print(f"no PyTorch comparison: {last or out.stderr.strip()[-300:]}")
  return None


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", required=True)
  p.add_argument("--batch", type=int, required=True)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--rounds", type=int, default=1,
                 help="repeat (octseg_jax, then PyTorch) this many times; the JSON keeps every "
                 "round's step times and the round with the median ratio")
  p.add_argument("--set", action="append", default=[], help="field=value (Python literal)")
  p.add_argument("--out", required=True)
  a = p.parse_args()
  config = load_config(a.config, a.set, {
      "benchmark.batch_size": a.batch, "benchmark.steps": a.steps, "benchmark.warmup": a.warmup,
      "benchmark.explain": False})
  load_before = os.getloadavg()
  rounds = []
  for _ in range(a.rounds):
    ours = benchmark.measure(config)
    torch = torch_step(config, ours["input_shape"], a)
    rounds.append({"octseg_jax": ours, "pytorch": torch})
    if torch is None:
      break
  if rounds[-1]["pytorch"] is None:
    result = {"octseg_jax": rounds[-1]["octseg_jax"]}
  else:
    for r in rounds:
      r["ratio"] = r["pytorch"]["train_step_s"] / r["octseg_jax"]["train_step"]["median_s"]
    # The round with the median ratio (its own step times, so the row stays consistent).
    middle = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
    result = {"octseg_jax": middle["octseg_jax"], "pytorch": middle["pytorch"],
              "pytorch_over_ours": middle["ratio"],
              "rounds": [{"octseg_jax_step_s": r["octseg_jax"]["train_step"]["median_s"],
                          "pytorch_step_s": r["pytorch"]["train_step_s"],
                          "pytorch_over_ours": r["ratio"]} for r in rounds]}
    print(f"train step: octseg_jax {result['octseg_jax']['train_step']['median_s']:.3f} s, PyTorch "
          f"{result['pytorch']['train_step_s']:.3f} s, PyTorch/ours = "
          f"{result['pytorch_over_ours']:.2f} (median of {len(rounds)} rounds: "
          + ", ".join(f"{r['ratio']:.2f}" for r in rounds) + ")")
  # The machine may be shared: the 1/5/15-minute load averages before and after both runs.
  result["load_average"] = {"before": load_before, "after": os.getloadavg()}
  write_json(a.out, result)


if __name__ == "__main__":
  main()
