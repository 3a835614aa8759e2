"""A campaign plan's queue on a lent GPU machine: several runs at once, within a time limit.

  python scripts/device_campaign.py --plan=configs/campaign_h200.json --commit=SHA \\
      --duke_dir=.devdata/duke_dme_chiu2015 --jobs=8 --minutes=9 --pack=$OUT

For the project's lent GPU machine, which runs a copy of the working tree (no git there) for a
few minutes: every run of the plan's queue trains and is scored exactly as the CPU runner does
it (campaign.commands: `main.py --mode=train`, then `--mode=eval` at native resolution,
literature protocol), `--jobs` at a time in queue order, without worktrees or nice, each
run's JAX on --platform only, with 0.9 / jobs of the GPU's memory (run_env). A finished
run's raw outputs go to the plan's results_dir with its run.json (campaign.run_record, with
--commit as its commit), and the whole results_dir is packed again into PACK/results.tar.gz after
each run (and every run's output into PACK/logs.tar.gz), so that what finished comes back even
if the machine is stopped. No run starts later than --minutes minus --min_run_minutes; a run
still going at --minutes is stopped and not recorded. After a failure and before any run has
finished well, a run waits until one does (then it starts) or until every started run has
failed (then it and the rest are skipped): a broken install costs only the runs already going,
and their logs show why.

At the end, of the plan's `ship` recipes whose seed-0 fold models are on this machine, the one
with the most such folds, then the best mean layer Dice over them, has those fold models packed
by scripts/eval_ensemble.py --package, each member folder (foldF_seed0: best checkpoint and the
files a member needs) into PACK/members_RECIPE_foldF_seed0.tar. Back on the CPU machine:
`tar xzf results.tar.gz`, commit, then `python scripts/campaign_table.py --plan=PLAN`; the
member tars unpack into DIR/foldF_seed0, for `eval_ensemble.py --package --output=NEW
DIR/fold*_seed0`. --platform=cpu tries the driver on a machine without GPU.
Exit status 1 if runs were due and none finished; 2 for a bad option or plan file.
"""

import argparse
import concurrent.futures
import os
import shutil
import sys
import tarfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import campaign  # noqa: E402  (no JAX: the runs are subprocesses)


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
  p.add_argument("--platform", default="cuda", choices=("cuda", "cpu"),
                 help="JAX_PLATFORMS of the runs: a run that cannot start CUDA fails at once "
                      "instead of training on the CPU (cpu: a trial on a machine without GPU)")
  args = p.parse_args(argv)
  args.state = os.path.abspath(args.state)
  if args.jobs < 1 or args.minutes <= 0 or args.min_run_minutes < 0:
    p.error("--jobs must be at least 1, --minutes above 0 and --min_run_minutes not negative")
  return args


def run_env(environ, jobs: int, platform: str = "cuda"):
  """The runs' environment: JAX on `platform` only, allocating GPU memory as it needs it up to
  its share, 0.9 / jobs of the GPU (with JAX's default limit of 75% each, the first runs to grow
  took the memory and runs beside them failed in their first epoch: the second H200 lease,
  docs/results.md section 8). Only XLA_CLIENT_MEM_FRACTION: jaxlib refuses to start its GPU
  plugin when the deprecated XLA_PYTHON_CLIENT_MEM_FRACTION is also set."""
  env = {k: v for k, v in environ.items() if k != "XLA_PYTHON_CLIENT_MEM_FRACTION"}
  return dict(env, JAX_PLATFORMS=platform, XLA_PYTHON_CLIENT_PREALLOCATE="false",
              XLA_CLIENT_MEM_FRACTION=f"{0.9 / jobs:.4f}", PYTHONUNBUFFERED="1")


def run_workdir(args, run) -> str:
  """The run's training workdir on this machine (its eval folder and log beside it)."""
  return os.path.join(args.state, "runs", campaign.run_id(run))


def execute(plan, run, args, deadline: float, env) -> bool:
  """Trains and scores one run; copies its raw outputs to the plan's results_dir."""
  workdir = run_workdir(args, run)
  eval_dir = workdir + "_eval"
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  cmds = campaign.commands(plan, run, workdir, eval_dir, campaign.REPO)
  log_path = workdir + ".out"
  t0 = time.time()
  if campaign.run_logged(cmds[0], campaign.REPO, log_path, 0, env, deadline):
    return False
  links = campaign.prepare_eval(plan, run, workdir, eval_dir, log_path, campaign.REPO)
  t1 = time.time()
  if links is None or campaign.run_logged(cmds[1], campaign.REPO, log_path, 0, env, deadline):
    return False
  record = campaign.run_record(plan, run, workdir, args.commit, cmds,
                               {"train": t1 - t0, "eval": time.time() - t1}, links)
  campaign.copy_results(plan, run, workdir, eval_dir, record, campaign.REPO)
  return True


def pack_results(plan, args, lock: threading.Lock) -> None:
  """PACK/results.tar.gz (the plan's results_dir as it is now) and PACK/logs.tar.gz (every run's
  train and eval output so far), each written aside and then renamed."""
  runs = os.path.join(args.state, "runs")
  with lock:     # listed under the lock: a pack of an older listing must not land last
    logs = [os.path.join(d, f) for d, _, files in os.walk(runs) for f in files
            if f.endswith(".out")]
    for name, paths in (("results", [(os.path.join(campaign.REPO, plan["results_dir"]),
                                      plan["results_dir"])]),
                        ("logs", [(p, os.path.relpath(p, runs)) for p in logs])):
      out = os.path.join(args.pack, name + ".tar.gz")
      with tarfile.open(out + ".tmp", "w:gz") as tar:
        for path, arcname in paths:
          if os.path.exists(path):
            tar.add(path, arcname=arcname)
      os.replace(out + ".tmp", out)


def local_model(args, run) -> str:
  """The run's workdir on this machine if its best checkpoint is here, else ''."""
  workdir = run_workdir(args, run)
  return workdir if os.path.isdir(os.path.join(workdir, campaign.MODEL)) else ""


def local_seed0_runs(plan, args, recipe: str):
  """The recipe's finished seed-0 runs (run.json written) whose fold models are on this machine
  (results from an earlier lease have none)."""
  return [run for run in plan["queue"] if run["recipe"] == recipe and run["seed"] == 0
          and os.path.exists(os.path.join(campaign.result_dir(plan, run), campaign.RUN_RECORD))
          and local_model(args, run)]


def seed0_means(plan, args):
  """{recipe: (mean layer Dice, count)} over local_seed0_runs of each of the plan's ship
  recipes that has any."""
  means = {}
  for name in plan.get("ship", []):
    dice = [campaign.read_json(os.path.join(campaign.result_dir(plan, run), campaign.METRICS))
            ["topology"]["literature"]["mean_layer_dice"]
            for run in local_seed0_runs(plan, args, name)]
    if dice:
      means[name] = (sum(dice) / len(dice), len(dice))
  return means


def pack_members(plan, args) -> None:
  """The best ship recipe's local_seed0_runs, packaged by `scripts/eval_ensemble.py --package`
  (the one place that says which files a member needs; its output in PACK/package_RECIPE.out)
  into STATE/ensemble_RECIPE, then each member folder into PACK/members_RECIPE_NAME.tar
  (written aside, then renamed)."""
  means = seed0_means(plan, args)
  if not means:
    return
  best = max(means, key=lambda n: (means[n][1], means[n][0]))   # most folds, then Dice
  print(f"ship candidates (mean, folds): {means}; packing {best}", flush=True)
  package = os.path.join(args.state, f"ensemble_{best}")
  for old in (package, package + ".partial"):                    # an earlier call's
    shutil.rmtree(old, ignore_errors=True)
  cmd = [sys.executable, os.path.join(campaign.REPO, "scripts", "eval_ensemble.py"),
         "--package", f"--output={package}"] + [
             run_workdir(args, run) for run in local_seed0_runs(plan, args, best)]
  log = os.path.join(args.pack, f"package_{best}.out")
  if campaign.run_logged(cmd, campaign.REPO, log, 0):
    print(f"packing {best} failed: see package_{best}.out", flush=True)
    return
  for name in sorted(os.listdir(os.path.join(package, "members"))):
    out = os.path.join(args.pack, f"members_{best}_{name}.tar")
    with tarfile.open(out + ".tmp", "w") as tar:
      tar.add(os.path.join(package, "members", name), arcname=name)
    os.replace(out + ".tmp", out)
  shutil.rmtree(package)


def may_start(clock, started, outcomes) -> bool:
  """Whether the next run starts: not after the last start time; after a failure and before any
  run finished well, only once one does (it waits), and never if every started run failed."""
  while time.time() <= clock["last_start"]:
    finished = [outcomes[r] for r in list(started) if r in outcomes]
    if not finished or any(finished):
      return True
    if len(finished) == len(started):
      return False
    time.sleep(1.0)
  return False


def worker(plan, run, args, clock, env, pack_lock, state) -> None:
  """One queued run, if may_start; records its outcome (None: not started) and packs."""
  name = campaign.run_id(run)
  started, outcomes = state["started"], state["outcomes"]
  if not may_start(clock, started, outcomes):
    outcomes[name] = None
    return
  started.append(name)
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
  env = run_env(os.environ, args.jobs, args.platform)
  todo = [r for r in plan["queue"] if not campaign.copied(plan, r)]
  state, pack_lock = {"started": [], "outcomes": {}}, threading.Lock()
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    for f in [pool.submit(worker, plan, r, args, clock, env, pack_lock, state) for r in todo]:
      f.result()
  pack_results(plan, args, pack_lock)
  pack_members(plan, args)
  done = sum(1 for v in state["outcomes"].values() if v)
  print(f"{done} of {len(todo)} runs finished in {(time.time() - start) / 60:.1f} min", flush=True)
  return 1 if todo and not done else 0


if __name__ == "__main__":
  sys.exit(main())
