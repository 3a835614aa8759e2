"""A campaign plan's queue on one lent accelerator machine: several runs at once, within a time limit.

  python scripts/device_campaign.py --plan=configs/campaign_h200.json --commit=SHA \\
      --duke_dir=.devdata/duke_dme_chiu2015 --jobs=8 --minutes=9 --pack=$OUT

For the project's lent GPU machine, which runs a copy of the working tree (no git there) for a
few minutes: every run of the plan's queue trains and is scored exactly as the CPU runner does
it (campaign.commands: `main.py --mode=train`, then `--mode=eval` at native resolution,
literature protocol), `--jobs` at a time in queue order, without worktrees or nice. A finished
run's raw outputs go to the plan's results_dir with its run.json (campaign.run_record, with
--commit as its commit), and the whole results_dir is packed again into PACK/results.tar.gz after
each run (and every run's output into PACK/logs.tar.gz), so that what finished comes back even if the machine is stopped. No run starts later
than --minutes minus --min_run_minutes; a run still going at --minutes is stopped and not
recorded. If every one of the first --jobs runs fails, the rest are not started (a broken
install shows in their logs, PACK/logs.tar.gz, instead of spending the lease).

At the end, of the plan's `ship` recipes, the one with the best seed-0 mean layer Dice over the
folds it finished has its seed-0 fold models (best checkpoint, config.json, split.json, log.csv,
provenance.json) packed into PACK/members_RECIPE_foldF.tar, for scripts/eval_ensemble.py
--package. Back on the CPU machine: `tar xzf results.tar.gz`, then
`python scripts/campaign_table.py --plan=PLAN`.
"""

import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import campaign  # noqa: E402  (no JAX: the runs are subprocesses)

MEMBER_FILES = ("config.json", "split.json", "log.csv", "provenance.json")


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--plan", required=True)
  p.add_argument("--commit", required=True, help="the commit the working tree is at (run.json)")
  p.add_argument("--duke_dir", required=True, help="the Duke DME folder on this machine")
  p.add_argument("--jobs", type=int, default=8)
  p.add_argument("--minutes", type=float, default=9.0)
  p.add_argument("--min_run_minutes", type=float, default=2.0)
  p.add_argument("--pack", required=True, help="folder for results.tar.gz and member tars")
  p.add_argument("--state", default="/tmp/device_campaign")
  return p.parse_args(argv)


def run_until(cmd, log_path: str, deadline: float, env) -> int:
  """Runs cmd (output appended to log_path); stopped at `deadline` (returns -9 then)."""
  with open(log_path, "a") as log:
    log.write(f"\n[{campaign.now()}] {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=campaign.REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
      return proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      return -9


def execute(plan, run, args, deadline: float, env) -> bool:
  """Trains and scores one run; copies its raw outputs to the plan's results_dir."""
  workdir = os.path.join(args.state, "runs", campaign.run_id(run))
  eval_dir = workdir + "_eval"
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  cmds = campaign.commands(plan, run, workdir, eval_dir, campaign.REPO)
  log_path = workdir + ".out"
  t0 = time.time()
  if run_until(cmds[0], log_path, deadline, env):
    return False
  t1 = time.time()
  if run_until(cmds[1], log_path, deadline, env):
    return False
  record = campaign.run_record(plan, run, workdir, args.commit, cmds,
                               {"train": t1 - t0, "eval": time.time() - t1})
  campaign.copy_results(plan, run, workdir, eval_dir, record, campaign.REPO)
  return True


def pack_results(plan, args, lock: threading.Lock) -> None:
  """PACK/results.tar.gz (the plan's results_dir as it is now) and PACK/logs.tar.gz (every run's
  train and eval output so far), each written aside and then renamed."""
  runs = os.path.join(args.state, "runs")
  logs = [os.path.join(d, f) for d, _, files in os.walk(runs) for f in files if f.endswith(".out")]
  with lock:
    for name, paths in (("results", [(os.path.join(campaign.REPO, plan["results_dir"]),
                                      plan["results_dir"])]),
                        ("logs", [(p, os.path.relpath(p, runs)) for p in logs])):
      out = os.path.join(args.pack, name + ".tar.gz")
      with tarfile.open(out + ".tmp", "w:gz") as tar:
        for path, arcname in paths:
          if os.path.exists(path):
            tar.add(path, arcname=arcname)
      os.replace(out + ".tmp", out)


def seed0_means(plan):
  """{recipe: mean layer Dice of its finished seed-0 runs} for the plan's ship recipes."""
  means = {}
  for name in plan.get("ship", []):
    dice = []
    for run in plan["queue"]:
      path = os.path.join(campaign.result_dir(plan, run), "metrics.json")
      if run["recipe"] == name and run["seed"] == 0 and os.path.exists(path):
        dice.append(campaign.read_json(path)["topology"]["literature"]["mean_layer_dice"])
    if dice:
      means[name] = (sum(dice) / len(dice), len(dice))
  return means


def pack_members(plan, args) -> None:
  """The best ship recipe's seed-0 fold models into PACK/members_RECIPE_foldF.tar."""
  means = seed0_means(plan)
  if not means:
    return
  best = max(means, key=lambda n: (means[n][1], means[n][0]))   # most folds, then Dice
  print(f"ship candidates (mean, folds): {means}; packing {best}", flush=True)
  for run in plan["queue"]:
    workdir = os.path.join(args.state, "runs", campaign.run_id(run))
    if run["recipe"] != best or run["seed"] != 0 or not os.path.exists(
        os.path.join(campaign.result_dir(plan, run), "run.json")):
      continue
    out = os.path.join(args.pack, f"members_{best}_fold{run['fold']}.tar")
    with tarfile.open(out, "w") as tar:
      for name in MEMBER_FILES + ("best",):
        tar.add(os.path.join(workdir, name), arcname=f"fold{run['fold']}_seed0/{name}")


def worker(plan, run, args, clock, env, pack_lock, outcomes) -> None:
  """One queued run, if there is still time and the install works; records the outcome."""
  first = clock["first"]
  if time.time() > clock["last_start"] or (
      all(r in outcomes for r in first) and not any(outcomes[r] for r in first)):
    outcomes[campaign.run_id(run)] = None
    return
  name = campaign.run_id(run)
  print(f"[{campaign.now()}] {name} starts", flush=True)
  ok = execute(plan, run, args, clock["deadline"], env)
  outcomes[name] = ok
  print(f"[{campaign.now()}] {name} {'done' if ok else 'FAILED'}", flush=True)
  pack_results(plan, args, pack_lock)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  plan = dict(campaign.load_plan(os.path.abspath(args.plan)), duke_dir=args.duke_dir)
  os.makedirs(args.pack, exist_ok=True)
  start = time.time()
  clock = {"deadline": start + 60 * args.minutes,
           "last_start": start + 60 * (args.minutes - args.min_run_minutes)}
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
  todo = [r for r in plan["queue"] if not os.path.exists(
      os.path.join(campaign.result_dir(plan, r), "run.json"))]
  clock["first"] = [campaign.run_id(r) for r in todo[:args.jobs]]
  outcomes, pack_lock = {}, threading.Lock()
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    for f in [pool.submit(worker, plan, r, args, clock, env, pack_lock, outcomes) for r in todo]:
      f.result()
  pack_results(plan, args, pack_lock)
  pack_members(plan, args)
  done = sum(1 for v in outcomes.values() if v)
  print(f"{done} of {len(todo)} runs finished in {(time.time() - start) / 60:.1f} min", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
