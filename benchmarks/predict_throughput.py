"""Predict throughput and peak memory at cohort scale: one .npz of N phantom B-scans.

Runs `main.py --mode=predict` as a fresh process for each N and --figures setting and records
wall time (start-up, model loading and compilation included), the time predict itself reports
after loading the model, the process's peak resident memory, and the machine's load average
(the machine may be shared: compare runs of one invocation, not across machines). The marginal
cost per B-scan is (t[N_max] - t[N_min]) / (N_max - N_min), which cancels start-up.

  python benchmarks/predict_throughput.py --workdir=pretrained \\
      --output=docs/results/cpu_2core/predict_throughput.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax.runtime import provenance, xla_setup  # noqa: E402

xla_setup.apply_cpu_flags()       # the network-alone timing runs with predict's XLA options


def run_predict(main_py: str, workdir: str, scans: str, output: str, figures: str,
                batch: int = 0) -> dict:
  """One predict process: wall seconds, peak RSS (MB), and predict's own summary.

  figures 'legacy' passes no --figures flag (for a checkout from before the flag existed).
  batch: scans per network call (--config.train.eval_batch_size); 0 = the workdir's own.
  """
  cmd = [sys.executable, main_py, "--mode=predict", f"--workdir={os.path.abspath(workdir)}",
         f"--input={scans}", f"--output={output}"]
  if figures != "legacy":
    cmd.append(f"--figures={figures}")
  if batch:
    cmd.append(f"--config.train.eval_batch_size={batch}")
  load_before = os.getloadavg()
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=os.path.dirname(main_py), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - start
  err = proc.stderr.read().decode()
  proc.stderr.close()
  if os.waitstatus_to_exitcode(status) != 0:
    raise RuntimeError(f"predict failed: {err[-2000:]}")
  manifest = {}
  if os.path.exists(os.path.join(output, "manifest.json")):
    with open(os.path.join(output, "manifest.json")) as f:
      manifest = json.load(f)
  return {"wall_s": round(wall, 3), "predict_s": manifest.get("seconds"),
          "batch_size": manifest.get("batch_size"),
          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),        # Linux: kilobytes
          "load_average_before": [round(v, 2) for v in load_before],
          "load_average_after": [round(v, 2) for v in os.getloadavg()]}


def network_seconds_per_scan(workdir: str, batch_sizes, height: int, width: int,
                             repeats: int = 4) -> dict:
  """The network alone (jitted forward pass and softmax, as predict runs it) in this process:
  median seconds per scan over `repeats` rounds of 16 scans for each batch size, and the
  convolution GFLOP/s it reaches (octseg_jax.models.flops)."""
  import jax
  import numpy as np
  from octseg_jax.models import flops
  from octseg_jax.data import preprocessing
  from octseg_jax.serving.inference import load_trained
  trained = load_trained(workdir)
  shape = preprocessing.input_shape(trained.recipe, (height, width))
  members = getattr(trained, "members", [trained])                     # an ensemble: all views
  gflop = (2 if getattr(trained, "flip", False) else 1) * sum(
      flops.conv_flops(c, 1) for m in members for c in flops.model_convs(m.config.model, shape)) / 1e9
  inputs = {b: np.random.default_rng(0).uniform(size=(b,) + shape).astype(np.float32)
            for b in batch_sizes}
  for b in batch_sizes:
    jax.block_until_ready(trained.device_probs(inputs[b]))                # compile
  times = {b: [] for b in batch_sizes}
  for _ in range(repeats):                                                # interleaved
    for b in batch_sizes:
      calls = max(1, 16 // b)
      start = time.perf_counter()
      for _ in range(calls):
        jax.block_until_ready(trained.device_probs(inputs[b]))
      times[b].append((time.perf_counter() - start) / (calls * b))
  return {"input_shape": list(shape), "conv_gflop_per_scan": round(gflop, 3),
          "by_batch": {b: {"s_per_scan": round(float(np.median(t)), 4),
                           "conv_gflop_per_s": round(gflop / float(np.median(t)), 1)}
                       for b, t in times.items()}}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="pretrained")
  parser.add_argument("--sizes", default="10,100", help="scans per file, comma separated")
  parser.add_argument("--figures", default="none,first", help="--figures settings to time")
  parser.add_argument("--batch", type=int, default=0,
                      help="scans per network call (train.eval_batch_size); 0 = the workdir's")
  parser.add_argument("--height", type=int, default=496)
  parser.add_argument("--width", type=int, default=512)
  parser.add_argument("--main", default=os.path.join(ROOT, "main.py"),
                      help="main.py of the checkout to time (another one for a baseline)")
  parser.add_argument("--scratch", default=os.path.join(ROOT, "runs", "predict_benchmark"))
  parser.add_argument("--output", default=os.path.join(
      ROOT, "docs", "results", "cpu_2core", "predict_throughput.json"))
  return parser.parse_args(argv)


def phantom_inputs(args, sizes):
  """{N: path of a phantom .npz with N B-scans} under args.scratch (written once)."""
  from octseg_jax.data import synthetic
  from octseg_jax.outputs.atomic import write_npz
  inputs = {}
  for n in sizes:
    path = os.path.join(args.scratch, f"phantom_{n}.npz")
    if not os.path.exists(path):
      write_npz(path, images=synthetic.generate(n, args.height, args.width, seed=11).images)
    inputs[n] = path
  return inputs


def main() -> None:
  args = parse_args()
  import jax
  from octseg_jax.outputs.atomic import write_json
  from octseg_jax.serving.inference import stored_config as load_config   # ensembles too
  sizes = [int(n) for n in args.sizes.split(",")]
  inputs = phantom_inputs(args, sizes)
  runs = {}
  for figures in args.figures.split(","):
    for n in sizes:
      out = os.path.join(args.scratch, f"out_{figures}_{n}_{time.time_ns()}")
      runs.setdefault(figures, {})[n] = run_predict(os.path.abspath(args.main), args.workdir,
                                                    inputs[n], out, figures, args.batch)
      print(figures, n, runs[figures][n], flush=True)
  network = network_seconds_per_scan(
      args.workdir, sorted({1, int(load_config(args.workdir).train.eval_batch_size)}),
      args.height, args.width)
  print("network alone", network, flush=True)
  lo, hi = min(sizes), max(sizes)
  summary = {}
  for figures, by_n in runs.items():
    summary[figures] = {
        "marginal_s_per_bscan_wall": round((by_n[hi]["wall_s"] - by_n[lo]["wall_s"]) / (hi - lo), 4),
        "marginal_s_per_bscan_predict": None if by_n[lo]["predict_s"] is None else round(
            (by_n[hi]["predict_s"] - by_n[lo]["predict_s"]) / (hi - lo), 4),
        "peak_rss_growth_mb": round(by_n[hi]["peak_rss_mb"] - by_n[lo]["peak_rss_mb"], 1)}
  config = load_config(args.workdir)
  result = {
      "what": f"predict on one .npz of N phantom B-scans of {args.height} x {args.width}",
      "main": os.path.relpath(os.path.abspath(args.main), ROOT), "workdir": args.workdir,
      "model": config.model.to_dict(),
      "batch_flag": args.batch or "none (predict's own: octseg_jax.modes.predict.network_batch_size)",
      "recipe": config.data.recipe.to_dict(), "sizes": sizes,
      "device": {"platform": platform.platform(), "processor": provenance.cpu_model(),
                 "cpu_count": os.cpu_count(), "jax": jax.__version__,
                 "jax_devices": [str(d) for d in jax.devices()]},
      "runs": runs, "summary": summary, "network_alone": network,
      "note": "wall_s includes process start, model loading and compilation; predict_s is "
              "what predict reports after loading the model. Load averages show how busy the "
              "shared machine was."}
  write_json(args.output, result)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
