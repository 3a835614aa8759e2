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


def run_predict(main_py: str, workdir: str, scans: str, output: str, figures: str) -> dict:
  """One predict process: wall seconds, peak RSS (MB), and predict's own summary.

  figures 'legacy' passes no --figures flag (for a checkout from before the flag existed).
  """
  cmd = [sys.executable, main_py, "--mode=predict", f"--workdir={os.path.abspath(workdir)}",
         f"--input={scans}", f"--output={output}"]
  if figures != "legacy":
    cmd.append(f"--figures={figures}")
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
          "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),        # Linux: kilobytes
          "load_average_before": [round(v, 2) for v in load_before],
          "load_average_after": [round(v, 2) for v in os.getloadavg()]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="pretrained")
  parser.add_argument("--sizes", default="10,100", help="scans per file, comma separated")
  parser.add_argument("--figures", default="none,first", help="--figures settings to time")
  parser.add_argument("--height", type=int, default=496)
  parser.add_argument("--width", type=int, default=512)
  parser.add_argument("--main", default=os.path.join(ROOT, "main.py"),
                      help="main.py of the checkout to time (another one for a baseline)")
  parser.add_argument("--scratch", default=os.path.join(ROOT, "runs", "predict_benchmark"))
  parser.add_argument("--output", default=os.path.join(
      ROOT, "docs", "results", "cpu_2core", "predict_throughput.json"))
  args = parser.parse_args()

  import jax
  from octseg_jax.data import synthetic
  from octseg_jax.io_utils import write_json, write_npz
  from octseg_jax.workdir import load_config
  sizes = [int(n) for n in args.sizes.split(",")]
  inputs = {}
  for n in sizes:
    path = os.path.join(args.scratch, f"phantom_{n}.npz")
    if not os.path.exists(path):
      write_npz(path, images=synthetic.generate(n, args.height, args.width, seed=11).images)
    inputs[n] = path
  runs = {}
  for figures in args.figures.split(","):
    for n in sizes:
      out = os.path.join(args.scratch, f"out_{figures}_{n}_{time.time_ns()}")
      runs.setdefault(figures, {})[n] = run_predict(os.path.abspath(args.main), args.workdir,
                                                    inputs[n], out, figures)
      print(figures, n, runs[figures][n], flush=True)
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
      "recipe": config.data.recipe.to_dict(), "sizes": sizes,
      "device": {"platform": platform.platform(), "processor": platform.processor(),
                 "cpu_count": os.cpu_count(), "jax": jax.__version__,
                 "jax_devices": [str(d) for d in jax.devices()]},
      "runs": runs, "summary": summary,
      "note": "wall_s includes process start, model loading and compilation; predict_s is "
              "what predict reports after loading the model. Load averages show how busy the "
              "shared machine was."}
  write_json(args.output, result)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  main()
