"""Multi-process training on one machine, checked against one process (README "Several machines").

Starts `main.py` as N processes on localhost (gloo CPU collectives, D host devices each) and
compares their log.csv with a one-process run of the same config and global batch; restarts a
run killed after its first checkpoint; reads the checkpoints with --mode=eval; optionally runs
--mode=benchmark on 1, 2 and 4 processes.

  python scripts/check_distributed.py --out runs/check_distributed           # all scenarios
  python scripts/check_distributed.py --out runs/cd --scenarios 2x1,restart  # some
  python scripts/check_distributed.py --out runs/cd --benchmark tiny,cpu_demo

tests/runtime/test_distributed.py uses `launch` from here.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from octseg_jax import layout  # noqa: E402  (names only)
from octseg_jax.outputs import training_log  # noqa: E402  (numpy only: no JAX in the launcher)

LOSSES = ("train_loss", "val_loss")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(devices_per_process: int) -> Dict[str, str]:
  """The environment of one CPU process with `devices_per_process` host devices (replacing a
  device count the caller's XLA_FLAGS may hold, e.g. the test suite's)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count="
                                       f"{devices_per_process}"])
  return env


def start(num_processes: int, args: Sequence[str], devices_per_process: int = 1,
          timeout_s: int = 300, log_prefix: Optional[str] = None) -> List[subprocess.Popen]:
  """`python main.py ARGS` as `num_processes` processes (one process: no distributed flags)."""
  port = free_port()
  procs = []
  for i in range(num_processes):
    extra = [] if num_processes == 1 else [
        f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
        f"--process_id={i}", f"--distributed_timeout_s={timeout_s}"]
    out = open(f"{log_prefix}_p{i}.log", "w") if log_prefix else subprocess.PIPE
    procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "main.py"), *args, *extra],
                                  cwd=ROOT, env=process_env(devices_per_process), stdout=out,
                                  stderr=subprocess.STDOUT, text=True))
  return procs


def finish(procs: List[subprocess.Popen], timeout_s: float) -> List[tuple]:
  """[(return code, output)] of started processes; all are killed after `timeout_s`."""
  deadline, results = time.time() + timeout_s, []
  for p in procs:
    try:
      out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      out, _ = p.communicate()
      out = (out or "") + f"\n[killed after {timeout_s} s]"
    results.append((p.returncode, out or ""))
  return results


def launch(num_processes: int, args: Sequence[str], devices_per_process: int = 1,
           timeout_s: float = 600) -> List[tuple]:
  return finish(start(num_processes, args, devices_per_process), timeout_s)


def max_rel_diff(a: List[Dict], b: List[Dict], keys=LOSSES) -> Dict[str, float]:
  out = {}
  for k in keys:
    x = [float(r[k]) for r in a]
    y = [float(r[k]) for r in b]
    if len(x) != len(y):
      out[k] = float("inf")
    else:
      out[k] = max(abs(p - q) / abs(p) for p, q in zip(x, y))
  return out


def first_checkpoint_done(workdir: str) -> bool:
  """Epoch 1's resumable checkpoint is finalised (orbax renames its temporary folder)."""
  folder = os.path.join(workdir, layout.CHECKPOINT_DIR)
  return os.path.isdir(os.path.join(folder, "1")) and os.path.exists(
      os.path.join(folder, "1", "_CHECKPOINT_METADATA"))


def kill_after_first_checkpoint(num_processes: int, args: Sequence[str], workdir: str,
                                timeout_s: float = 600) -> bool:
  """Starts a run and SIGKILLs every process once epoch 1's checkpoint is there; whether the
  kill came before the run ended by itself."""
  procs = start(num_processes, args)
  deadline = time.time() + timeout_s
  while time.time() < deadline and not first_checkpoint_done(workdir):
    if all(p.poll() is not None for p in procs):
      break
    time.sleep(0.05)
  killed = all(p.poll() is None for p in procs)
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
    p.communicate()
  return killed


def train_args(config: str, workdir: str, epochs: int, extra: Sequence[str] = ()) -> List[str]:
  return [f"--config={config}", f"--workdir={workdir}", f"--config.train.num_epochs={epochs}",
          *extra]


def epoch_seconds(workdir: str) -> float:
  """Median seconds of the epochs after the first (which compiles)."""
  secs = sorted(float(r["seconds"]) for r in training_log.workdir_rows(workdir)[1:])
  return secs[len(secs) // 2] if secs else float("nan")


def check_run(name: str, workdir: str, results, reference: Optional[str], out: str) -> Dict:
  """One scenario's verdict: exit codes, files, losses against the reference, eval."""
  codes = [rc for rc, _ in results]
  report = {"scenario": name, "exit_codes": codes}
  if any(codes):
    report["output"] = [o[-2000:] for _, o in results]
    return report
  files = sorted(os.listdir(workdir))
  report["files"] = files
  report["epochs"] = len(training_log.workdir_rows(workdir))
  report["median_epoch_s"] = epoch_seconds(workdir)
  if reference:
    report["max_rel_diff"] = max_rel_diff(training_log.workdir_rows(reference), training_log.workdir_rows(workdir))
  ev = launch(1, ["--mode=eval", f"--workdir={workdir}", f"--output={out}/eval_{name}"])[0]
  report["eval_exit_code"] = ev[0]
  metrics = os.path.join(out, f"eval_{name}", "metrics.json")
  report["eval_metrics_written"] = os.path.exists(metrics)
  return report


def run_scenarios(out: str, scenarios: Sequence[str], config: str, epochs: int) -> List[Dict]:
  """Each 'NxD' scenario (N processes of D devices) against one process of N*D devices (the
  same mesh size, so the same global batch split) and against one process of one device;
  'restart' against the uninterrupted 2x1 run."""
  reports, references = [], {}

  def reference(devices: int) -> str:
    workdir = os.path.join(out, f"1x{devices}")
    if devices not in references and os.path.exists(os.path.join(workdir, layout.LOG_FILE)) and \
        len(training_log.workdir_rows(workdir)) == epochs:      # kept from an earlier call
      references[devices] = workdir
    if devices not in references:
      t = time.time()
      res = launch(1, train_args(config, workdir, epochs), devices_per_process=devices)
      reports.append(dict(check_run(f"1x{devices}", workdir, res, None, out),
                          wall_s=time.time() - t))
      print(json.dumps(reports[-1]), flush=True)
      references[devices] = workdir
    return references[devices]

  reference(1)
  for name in scenarios:
    workdir = os.path.join(out, name)
    if name == "restart":     # 2 processes killed after epoch 1's checkpoint, then restarted
      t = time.time()
      killed = kill_after_first_checkpoint(2, train_args(config, workdir, epochs), workdir)
      after_kill = sorted(os.listdir(os.path.join(workdir, layout.CHECKPOINT_DIR)))
      res = launch(2, train_args(config, workdir, epochs))
      report = check_run(name, workdir, res, os.path.join(out, "2x1"), out)
      report.update(killed_before_end=killed, checkpoints_after_kill=after_kill,
                    resumed_after_epoch_1=any(f"resuming {workdir} after epoch 1" in o
                                              for _, o in res))
    else:
      n, d = (int(v) for v in name.split("x"))
      same_mesh = reference(n * d)
      t = time.time()
      res = launch(n, train_args(config, workdir, epochs), devices_per_process=d)
      report = check_run(name, workdir, res, same_mesh, out)
      if not any(report["exit_codes"]):
        report["max_rel_diff_vs_1x1"] = max_rel_diff(training_log.workdir_rows(reference(1)), training_log.workdir_rows(workdir))
    report["wall_s"] = time.time() - t
    reports.append(report)
    print(json.dumps(report), flush=True)
  return reports


def run_benchmarks(out: str, configs: Sequence[str], counts=(1, 2, 4)) -> List[Dict]:
  """--mode=benchmark of each config on 1, 2 and 4 processes (1 device each)."""
  rows = []
  for name in configs:
    for n in counts:
      folder = os.path.join(out, f"bench_{name}_{n}")
      res = launch(n, [f"--config=configs/{name}.py", "--mode=benchmark", f"--output={folder}",
                       "--config.benchmark.explain=False"])
      if any(rc for rc, _ in res):
        rows.append({"config": name, "processes": n, "error": res[0][1][-1500:]})
        continue
      with open(os.path.join(folder, "benchmark.json")) as f:
        b = json.load(f)
      rows.append({"config": name, "processes": b["process_count"], "batch": b["batch"],
                   "step_ms": 1e3 * b["train_step"]["median_s"],
                   "images_per_s": b["images_per_s"],
                   "images_per_s_per_process": b["images_per_s_per_process"],
                   "compile_s": b["compile_s"]})
      print(json.dumps(rows[-1]), flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--scenarios", default="2x1,4x1,2x2,restart")
  parser.add_argument("--config", default="configs/tiny.py")
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--benchmark", default="", help="configs to benchmark, e.g. tiny,cpu_demo")
  a = parser.parse_args()
  os.makedirs(a.out, exist_ok=True)
  result = {"load_average_start": os.getloadavg()}
  if a.scenarios:
    result["scenarios"] = run_scenarios(a.out, a.scenarios.split(","), a.config, a.epochs)
  if a.benchmark:
    result["benchmark"] = run_benchmarks(a.out, a.benchmark.split(","))
  result["load_average_end"] = os.getloadavg()
  with open(os.path.join(a.out, "summary.json"), "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
