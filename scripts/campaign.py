"""The accuracy campaign: a queue of Duke runs (recipe x fold x seed) that survives restarts.

  python scripts/run_experiments.py --campaign            # start (or restart) the runner
  python scripts/run_experiments.py --status              # done / running / queued, compute left

The queue is the committed plan file `configs/campaign.json`: recipes (a config file, its
overrides, optional `fold_overrides` per fold, optional `score_subjects` per fold for a recipe
whose validation split is its training scans, the commit they run at, and `estimate_s`, the
seconds one run is expected to take until one has finished; optional `note`; `kind`
"learning_curve" marks a reading that is never adopted, "validation_free" a recipe trained
without a validation pair, "final" one trained on every subject, which has no held-out
score: its optional `cross_validation` names the validation_free recipe whose fold models,
trained as it is, stand for it on held-out eyes) and runs (a fold number, or "all"). The
runner takes the runs in order, one at a time, under `nice`:

- each recipe's commit is checked out in its own git worktree (STATE/worktrees/SHA), so work on
  main never changes a run in flight, and every run's code is known;
- a run trains with `main.py --mode=train` into STATE/runs/RECIPE/foldF_seedS (all_seedS for
  fold "all"; a rerun of the same command resumes from its last checkpoint, bit-identically),
  then scores its best checkpoint on its validation subjects (or its score_subjects) with
  `--mode=eval` (native resolution, literature protocol);
- its raw outputs (resolved config, log.csv, metrics JSON/Markdown, provenance, run.json with
  commands, commit, seconds and the files scored for score_subjects) are copied to
  docs/results/campaign/RECIPE/foldF_seedS/ in this checkout and committed at once (only those
  paths);
- a run whose results are committed is skipped; one whose checkpoints were lost starts again;
- a queue entry with `"keep_model": true` keeps its model too: its best checkpoint folder
  (best/) is copied and committed with its results, so that the folder is a model workdir that
  outlives the machine (pretrained/'s members, the fold models an ensemble is read on). Such a
  run is done only when its model is committed; one whose results are but whose model is not
  (trained before it was kept, on a machine since lost) trains again, and the commit says
  whether its new log.csv equals the committed one (but for the seconds each epoch took).

STATE defaults to ../campaign beside this checkout (checkpoints may be lost with the machine;
results never are). The runner itself does no JAX work (it imports only the workdir helpers,
and duke.subject_files to choose the files a score_subjects run is scored on, which run.json
records), so editing main while it runs cannot change a run's training.

Before it starts anything, and again before each run, the plan is checked (`plan_problem`,
`runnable_problem`): its keys, each run's recipe, fold and seed, each recipe's commit, and its
overrides' field names against the config schema at that commit (read from git as text). A
problem is one line and exit status 2, not a run that fails hours later; an override's value
is checked by main.py when the run starts.
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from octseg_jax import layout  # noqa: E402
from octseg_jax.outputs import training_log  # noqa: E402
from octseg_jax.outputs.lock import pid_alive  # noqa: E402  (no JAX: config files and locks only)
PLAN = os.path.join(REPO, "configs", "campaign.json")
STATE = os.path.join(os.path.dirname(REPO), "campaign")
RUN_RECORD = "run.json"     # in a finished run's results folder: what ran, where, how long
RUNNING = "running.json"    # in the runner's state folder: the run in progress
METRICS = "metrics.json"    # eval's scores (octseg_jax.modes.evaluate.OUTPUTS; no JAX here)
MODEL = layout.BEST_DIR   # a workdir's best checkpoint folder, copied for a run that keeps it
RESULT_FILES = {   # copied name: (source folder, file) of a finished run
    **{name: ("train", name) for name in (layout.CONFIG_FILE, layout.LOG_FILE,
                                          layout.SPLIT_FILE, layout.PROVENANCE_FILE)},
    METRICS: ("eval", METRICS), "metrics.md": ("eval", "metrics.md"),
    "eval_provenance.json": ("eval", "eval_provenance.json"),
}
ALL = "all"    # a run's fold that holds no subject out: trained on every subject of the plan's
               # data (data.split 'all', for pretrained/), so its eval scores the fit, not new eyes
MAX_ATTEMPTS = 2          # per run and runner start: a run that fails twice is passed over
NICE = 10


PLAN_KEYS = {"recipes": dict, "queue": list, "results_dir": str, "duke_dir": str}
RECIPE_KEYS = {"config", "commit", "estimate_s", "overrides", "fold_overrides", "score_subjects",
               "kind", "cross_validation", "note"}
RUN_KEYS = {"recipe", "fold", "seed", "keep_model"}
KINDS = ("learning_curve", "validation_free", "final")


def load_plan(path=PLAN):
  """The plan file; one line and exit status 2 if it cannot be read as JSON or `plan_problem`
  finds a problem in it."""
  try:
    with open(path) as f:
      plan = json.load(f)
  except (OSError, ValueError) as e:
    print(f"error: {path}: not a readable plan file ({e})", file=sys.stderr)
    sys.exit(2)
  problem = plan_problem(plan)
  if problem:
    print(f"error: {path}: {problem}", file=sys.stderr)
    sys.exit(2)
  return plan


def plan_problem(plan) -> str:
  """The first problem of a plan's structure ('' if none): its keys, each recipe's and each
  run's keys and values, and the recipes its comparisons name."""
  if not isinstance(plan, dict):
    return "expected a JSON object"
  for key, kind in PLAN_KEYS.items():
    if not isinstance(plan.get(key), kind):
      return f"needs {key!r}, a JSON {'object' if kind is dict else kind.__name__}"
  for name, recipe in plan["recipes"].items():
    problem = recipe_problem(plan, name, recipe)
    if problem:
      return f"recipe {name}: {problem}"
  for run in plan["queue"]:
    problem = run_problem(plan, run)
    if problem:
      return f"run {json.dumps(run)}: {problem}"
  if not isinstance(plan.get("comparisons", []), list):
    return "comparisons must be a JSON list"
  for c in plan.get("comparisons", []):
    if not (isinstance(c, dict) and all(isinstance(c.get(k), str) and c[k] in plan["recipes"]
                                        for k in ("recipe", "against"))):
      return f"comparison {json.dumps(c)}: needs 'recipe' and 'against', recipes of the plan"
  return ""


def recipe_problem(plan, name: str, recipe) -> str:
  """The first problem of one recipe of the plan ('' if none)."""
  if not isinstance(recipe, dict):
    return "expected a JSON object"
  unknown = sorted(set(recipe) - RECIPE_KEYS)
  if unknown:
    return f"unknown key {unknown[0]!r}"
  if not isinstance(recipe.get("config"), str):
    return "needs 'config', a config file"
  seconds = recipe.get("estimate_s", 1)
  if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and seconds > 0):
    return f"estimate_s must be a positive number of seconds, not {seconds!r}"
  kind = recipe.get("kind", KINDS[0])
  if not isinstance(kind, str) or kind not in KINDS:
    return f"kind must be one of {', '.join(KINDS)}, not {recipe['kind']!r}"
  by_fold = recipe.get("fold_overrides", {})
  if not (isinstance(recipe.get("overrides", {}), dict) and isinstance(by_fold, dict)
          and all(isinstance(o, dict) for o in by_fold.values())):
    return ("overrides must be an object {field: value}, fold_overrides one of such objects "
            "per fold {\"F\": {field: value}}")
  if not isinstance(recipe.get("score_subjects", {}), dict):
    return "score_subjects must be an object {\"F\": [subject numbers]}"
  cv = recipe.get("cross_validation")
  if cv is not None and (not isinstance(cv, str) or cv == name
                         or plan["recipes"].get(cv, {}).get("kind") != "validation_free"):
    return "cross_validation must name another recipe of the plan, of kind validation_free"
  for fold, subjects in recipe.get("score_subjects", {}).items():
    if not (isinstance(subjects, list) and subjects
            and all(isinstance(n, int) for n in subjects)):
      return (f"score_subjects of fold {fold} must be a non-empty list of subject numbers, "
              f"not {subjects!r}")
  return ""


def run_problem(plan, run) -> str:
  """The first problem of one queue entry ('' if none)."""
  if not isinstance(run, dict) or not {"recipe", "fold", "seed"} <= set(run):
    return "needs 'recipe', 'fold' (a fold number or \"all\") and 'seed'"
  unknown = sorted(set(run) - RUN_KEYS)
  if unknown:
    return f"unknown key {unknown[0]!r}"
  if not isinstance(run["recipe"], str) or run["recipe"] not in plan["recipes"]:
    return "names no recipe of the plan"
  if run["fold"] != ALL and not (type(run["fold"]) is int and run["fold"] >= 0):
    return f"fold must be a fold number from 0 or \"{ALL}\""
  if not (type(run["seed"]) is int and run["seed"] >= 0):
    return "seed must be a whole number from 0"
  if not isinstance(run.get("keep_model", False), bool):
    return "keep_model must be true or false"
  return ""


SCHEMA_FILE = "octseg_jax/config/schema.py"
FIELD_LINE = re.compile(r'^\s*"([a-z_][\w.]*)": F\(', re.M)      # a field's line in FIELDS
FOLDS_LINE = re.compile(r'"data\.num_folds": F\((\d+)')


def schema_at(commit: str, repo=REPO):
  """(config field names, default data.num_folds) of the schema at `commit`, read from git as
  text, not imported, so that the runner stays free of JAX and of main's code; (None, None)
  where that commit has no such file (the layouts before it)."""
  text = git("show", f"{commit}:{SCHEMA_FILE}", repo=repo, check=False)
  folds = FOLDS_LINE.search(text)
  return set(FIELD_LINE.findall(text)) or None, int(folds.group(1)) if folds else None


def runnable_problem(plan, repo=REPO) -> str:
  """The first reason a run left to do could not start ('' if none): its recipe has no commit
  or estimate, its commit is not in the repository, an override is not a config field at that
  commit, or its fold is beyond the recipe's data.num_folds there. Override values are checked
  by main.py when the run starts (one line in the run's log). Done runs are not checked."""
  todo = [r for r in plan["queue"] if not done(plan, r, repo)]
  folds = {}
  for name in dict.fromkeys(r["recipe"] for r in todo):
    recipe = plan["recipes"][name]
    if not {"commit", "estimate_s"} <= set(recipe):
      return (f"recipe {name}: needs 'commit' (the commit its runs check out) and 'estimate_s' "
              "(the seconds one run is expected to take)")
    if not git("rev-parse", "--verify", "--quiet", recipe["commit"] + "^{commit}", repo=repo,
               check=False):
      return f"recipe {name}: commit {recipe['commit']!r} is not a commit of {repo}"
    fields, num_folds = schema_at(recipe["commit"], repo)
    for overrides in [recipe.get("overrides", {}), *recipe.get("fold_overrides", {}).values()]:
      unknown = sorted(set(overrides) - fields) if fields else []
      if unknown:
        return (f"recipe {name}: override {unknown[0]} is not a config field at its commit "
                f"{recipe['commit']}")
    folds[name] = recipe.get("overrides", {}).get("data.num_folds", num_folds)
  for run in todo:
    limit = folds[run["recipe"]]
    if run["fold"] != ALL and limit is not None and run["fold"] >= limit:
      return (f"run {json.dumps(run)}: fold {run['fold']} is beyond the recipe's {limit} folds "
              "(data.num_folds)")
  return ""


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def run_id(run) -> str:
  """RECIPE/foldF_seedS (RECIPE/all_seedS for fold ALL): where the run trains (STATE/runs/...)
  and its results go."""
  fold = ALL if run["fold"] == ALL else f"fold{run['fold']}"
  return f"{run['recipe']}/{fold}_seed{run['seed']}"


def run_parts(run: str):
  """(recipe, fold, seed) of a run_id: its inverse."""
  recipe, rest = run.split("/")
  fold, seed = rest.split("_seed")
  return recipe, (ALL if fold == ALL else int(fold[len("fold"):])), int(seed)


def run_of_workdir(workdir: str) -> str:
  """The run_id of a run's workdir (.../RECIPE/foldF_seedS, normalised): how an ensemble's
  member paths or a record's workdir name their campaign run, one name for the model whether
  it was read from the runner's workdir or from its results folder (a kept model)."""
  return "/".join(os.path.normpath(str(workdir)).split(os.sep)[-2:])


def result_dir(plan, run, repo=REPO) -> str:
  return os.path.join(repo, plan["results_dir"], run_id(run))


def git(*args, repo=REPO, check=True) -> str:
  out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
  if check and out.returncode:
    raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
  return out.stdout.strip()


def committed(plan, run, repo=REPO, name: str = RUN_RECORD) -> bool:
  """The run's run.json (written last), or another entry `name` of its results folder, is in
  HEAD of this checkout."""
  rel = os.path.relpath(os.path.join(result_dir(plan, run, repo), name), repo)
  return subprocess.run(["git", "-C", repo, "cat-file", "-e", f"HEAD:{rel}"],
                        capture_output=True).returncode == 0


def copied(plan, run, repo=REPO) -> bool:
  """The run's results are in its results folder on disk (run.json, written last), with its
  model where the queue entry keeps it; whether committed or not (a machine without git)."""
  dest = result_dir(plan, run, repo)
  return os.path.exists(os.path.join(dest, RUN_RECORD)) and (
      not run.get("keep_model", False) or os.path.isdir(os.path.join(dest, MODEL)))


def done(plan, run, repo=REPO) -> bool:
  """Nothing left to run: its results are committed, and its model too where the queue entry
  keeps it."""
  return committed(plan, run, repo) and (not run.get("keep_model", False)
                                         or committed(plan, run, repo, MODEL))


def worktree(commit: str, state=STATE, repo=REPO) -> str:
  """A detached worktree of `commit` (created once, never moved)."""
  sha = git("rev-parse", f"{commit}^{{commit}}", repo=repo)
  path = os.path.join(state, "worktrees", sha[:12])
  if not os.path.isdir(os.path.join(path, "octseg_jax")):
    git("worktree", "prune", repo=repo)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    git("worktree", "add", "--detach", "--force", path, sha, repo=repo)
  return path


def override_arg(field: str, value) -> str:
  if isinstance(value, (list, tuple)):
    value = "(" + ",".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return f"--config.{field}={value}"


def commands(plan, run, workdir: str, eval_dir: str, repo=REPO):
  """The train and eval command lines of a run (run in the recipe's worktree): the recipe's
  overrides, then its fold_overrides for the run's fold ({"F": {field: value}}, e.g. the
  subjects a fold trains on in a learning curve). eval scores the workdir's validation split,
  or, where the recipe names the fold's `score_subjects` ({"F": [subjects]}: a recipe whose
  validation split is its training scans), those subjects' files (scored_input)."""
  recipe, fold = plan["recipes"][run["recipe"]], run["fold"]
  split = {"data.split": "all"} if fold == ALL else {"data.split": "subject", "data.fold": fold}
  fields = {"seed": run["seed"], **split, "data.duke_dir": duke_folder(plan, repo),
            **recipe.get("overrides", {}), **recipe.get("fold_overrides", {}).get(str(fold), {})}
  py = [sys.executable, "main.py"]
  train = py + [f"--config={recipe['config']}", f"--workdir={workdir}"] + [
      override_arg(k, v) for k, v in fields.items()]
  evaluate = py + ["--mode=eval", f"--workdir={workdir}", f"--output={eval_dir}"]
  if score_subjects(plan, run):
    evaluate.append(f"--input={workdir}_scored")
  return train, evaluate


def duke_folder(plan, repo=REPO) -> str:
  """The plan's duke_dir as an absolute path (it is relative to the checkout)."""
  return os.path.abspath(os.path.join(repo, plan["duke_dir"]))


def score_subjects(plan, run):
  """The subjects a run's eval scores instead of its validation split (its recipe's
  score_subjects of the run's fold; load_plan refuses empty lists), or None."""
  return plan["recipes"][run["recipe"]].get("score_subjects", {}).get(str(run["fold"]))


def scored_input(plan, run, workdir: str, repo=REPO) -> dict:
  """The folder eval reads for a run with score_subjects, WORKDIR_scored, made again each time:
  links to those subjects' files of the plan's duke_dir. Returns {link name: file} ({} for a
  run scored on its validation split)."""
  subjects = score_subjects(plan, run)
  if not subjects:
    return {}
  from octseg_jax.data import duke            # numpy only, no JAX
  links = {os.path.basename(p): p
           for p in duke.subject_files(duke_folder(plan, repo), tuple(subjects),
                                       option="the plan's duke_dir")}
  folder = workdir + "_scored"
  shutil.rmtree(folder, ignore_errors=True)
  os.makedirs(folder)
  for name, path in links.items():
    os.symlink(path, os.path.join(folder, name))
  return links


def prepare_eval(plan, run, workdir: str, eval_dir: str, log_path: str, repo=REPO):
  """Before a run's eval (both runners): a half-written eval folder is removed and the files of
  score_subjects linked (scored_input). Returns the links, or None when they cannot be made,
  the reason appended to the run's log: that run fails, the runner goes on."""
  from octseg_jax.errors import InputError
  shutil.rmtree(eval_dir, ignore_errors=True)      # a half-written eval is redone
  try:
    return scored_input(plan, run, workdir, repo)
  except (InputError, OSError) as e:
    with open(log_path, "a") as f:
      f.write(f"campaign: cannot link the files {run_id(run)} is scored on: {e}\n")
    return None


def run_logged(cmd, cwd: str, log_path: str, nice: int = NICE, env=None,
               deadline: float = None) -> int:
  """Runs cmd under `nice`, appending its output to log_path; returns the exit status. With a
  `deadline` (time.time()), a command still going then is killed with its process group (-9)."""
  with open(log_path, "a") as log:
    log.write(f"\n[{now()}] {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=lambda: child_setup(nice),
                            start_new_session=deadline is not None)
    try:
      return proc.wait(timeout=None if deadline is None else max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      return -9
    except BaseException:
      proc.send_signal(signal.SIGINT)      # training stops cleanly after a checkpoint save
      proc.wait()
      raise


def child_setup(nice: int) -> None:
  """In a run's process before it starts: `nice`, and SIGINT's default action, which a runner
  started in the background (`cmd &`) would otherwise pass on ignored, so that the runner's
  SIGINT stops the run cleanly (KeyboardInterrupt after its last checkpoint)."""
  os.nice(nice)
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def copy_results(plan, run, workdir: str, eval_dir: str, record: dict, repo=REPO) -> str:
  """Raw outputs into the checkout's results folder, run.json last; returns the folder."""
  dest = result_dir(plan, run, repo)
  tmp = dest + ".partial"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for name, (where, src) in RESULT_FILES.items():
    path = os.path.join(workdir if where == "train" else eval_dir, src)
    if os.path.exists(path):
      shutil.copyfile(path, os.path.join(tmp, name))
  if run.get("keep_model", False):
    shutil.copytree(os.path.join(workdir, MODEL), os.path.join(tmp, MODEL))
  with open(os.path.join(tmp, RUN_RECORD), "w") as f:
    json.dump(record, f, indent=2)
  shutil.rmtree(dest, ignore_errors=True)
  os.rename(tmp, dest)
  return dest


def commit_results(paths, message: str, repo=REPO, tries: int = 30) -> None:
  """Commits exactly `paths` (other staged or unstaged work in the checkout is left alone),
  retrying while another git command holds the index."""
  rel = [os.path.relpath(p, repo) for p in paths]
  for _ in range(tries):
    add = subprocess.run(["git", "-C", repo, "add", "--", *rel], capture_output=True, text=True)
    if add.returncode == 0:
      out = subprocess.run(["git", "-C", repo, "commit", "-q", "-m", message, "--", *rel],
                           capture_output=True, text=True)
      if out.returncode == 0 or "nothing" in out.stdout + out.stderr:
        return
    time.sleep(2.0)
  raise RuntimeError(f"could not commit {rel}")


def execute(plan, run, state=STATE, repo=REPO) -> bool:
  """Trains (or resumes) and scores one run, then copies and commits its results."""
  recipe = plan["recipes"][run["recipe"]]
  tree = worktree(recipe["commit"], state, repo)
  workdir = os.path.join(state, "runs", run_id(run))
  eval_dir = workdir + "_eval"
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  train_cmd, eval_cmd = commands(plan, run, workdir, eval_dir, repo)
  log_path = workdir + ".out"
  t0 = time.time()
  if run_logged(train_cmd, tree, log_path):
    return False
  train_s = time.time() - t0
  links = prepare_eval(plan, run, workdir, eval_dir, log_path, repo)
  t1 = time.time()
  if links is None or run_logged(eval_cmd, tree, log_path):
    return False
  record = run_record(plan, run, workdir, git("rev-parse", "HEAD", repo=tree),
                      (train_cmd, eval_cmd), {"train": train_s, "eval": time.time() - t1}, links)
  record["nice"] = NICE
  if run.get("keep_model", False) and not os.path.isdir(os.path.join(workdir, MODEL)):
    with open(log_path, "a") as f:
      f.write(f"campaign: {workdir}/{MODEL}: no best checkpoint to keep\n")
    return False
  dest = copy_results(plan, run, workdir, eval_dir, record, repo)
  commit_results([dest], results_message(plan, run, repo), repo)
  return True


def results_message(plan, run, repo=REPO) -> str:
  """The commit message of a run's copied results: its score, what it scored, whether its model
  is kept, and, for results committed before (a run that trained again to keep its model),
  whether its log.csv equals the committed one but for the seconds each epoch took."""
  dest = result_dir(plan, run, repo)
  dice = read_json(os.path.join(dest, METRICS))["topology"]["literature"]["mean_layer_dice"]
  kept = ", model kept" if run.get("keep_model", False) else ""
  note = ""
  log = os.path.join(dest, layout.LOG_FILE)
  if committed(plan, run, repo, layout.LOG_FILE) and os.path.exists(log):
    rel = os.path.relpath(log, repo)
    with open(log) as f:
      same = log_values(f.read()) == log_values(git("show", f"HEAD:{rel}", repo=repo))
    note = ("; it ran again to keep its model: its log.csv equals the committed one, but for "
            "the seconds" if same else "; it ran again to keep its model: its log.csv DIFFERS "
            "from the committed one, which these results replace")
  return (f"Campaign: {run_id(run)} results (mean layer Dice {dice:.4f}{fit_note(run)}, order "
          f"fix on, native resolution{kept}){note}")


def log_values(text: str) -> list:
  """A log.csv's rows without their `seconds` (the wall time each epoch took): what a rerun of
  the same command on the same numbers reproduces."""
  return [{k: v for k, v in row.items() if k != "seconds"}
          for row in training_log.parse_rows(text)]


def fit_note(run) -> str:
  """What a fold "all" run's eval scored, as its commit message and --status say it ('' for a
  run scored on subjects it never trained on)."""
  return " [the fit on its training scans, not new eyes]" if run["fold"] == ALL else ""


def run_record(plan, run, workdir: str, commit: str, cmds, wall_s: dict,
               scored_files=None) -> dict:
  """run.json of a finished run: what ran (recipe, commands, commit), where, how long, and the
  files linked for its eval (scored_input), if any."""
  rows = training_log.workdir_rows(workdir)
  return {"run": run_id(run), "recipe": plan["recipes"][run["recipe"]], "fold": run["fold"],
          "seed": run["seed"], "commit": commit, "train_command": cmds[0][1:],
          "eval_command": cmds[1][1:], "finished": now(), "host": socket.gethostname(),
          "cpus": os.cpu_count(), "wall_s_this_start": wall_s, "epochs": len(rows),
          "train_s_logged": sum(float(r["seconds"]) for r in rows)} | (
              {"scored_files": scored_files} if scored_files else {})


RUNNER_LOCK = "runner.lock"


def take_lock(state=STATE):
  """One runner at a time: the state folder's lock (outputs.lock.FolderLock: pid, host and
  activity; a dead owner's lock is taken over). Returns it (released by the caller)."""
  from octseg_jax.errors import InputError
  from octseg_jax.outputs.lock import FolderLock
  os.makedirs(state, exist_ok=True)
  lock = FolderLock(state, RUNNER_LOCK, "is running the campaign", own_is_stale=True)
  try:
    lock.acquire()
  except InputError as e:
    raise SystemExit(str(e)) from None
  return lock


def runner_alive(state=STATE) -> bool:
  """Whether the process named in the runner lock lives."""
  try:
    with open(os.path.join(state, RUNNER_LOCK)) as f:
      pid = int(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return False
  return pid_alive(pid)


def write_running(state, run) -> None:
  path = os.path.join(state, RUNNING)
  if run is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path + ".tmp", "w") as f:
    json.dump({"run": run_id(run), "since": now(), "pid": os.getpid()}, f)
  os.replace(path + ".tmp", path)


def commit_uncommitted(plan, repo=REPO) -> None:
  """Results (and a kept model) copied by an earlier runner that stopped before committing
  them, with the message it would have written."""
  for run in plan["queue"]:
    if copied(plan, run, repo) and not done(plan, run, repo):
      commit_results([result_dir(plan, run, repo)],
                     results_message(plan, run, repo) + " [committed on restart]", repo)


def run_campaign(plan_path=PLAN, state=STATE, repo=REPO) -> int:
  """Runs the plan's queue until every run is committed; rereads the plan between runs, so
  runs appended to configs/campaign.json on main join the queue. 0, or 2 where an edit of the
  plan stopped it (runnable_problem)."""
  lock = take_lock(state)
  try:
    return run_queue(plan_path, state, repo)
  finally:
    lock.release()


def run_queue(plan_path, state, repo) -> int:
  """The runner's loop: the first run of the plan without committed results, until none (0), or
  until a check of the plan, reread before each run, finds a problem (2)."""
  failures = {}
  while True:
    plan = load_plan(plan_path)
    problem = runnable_problem(plan, repo)     # the plan may have been edited since the start
    if problem:
      print(f"error: {plan_path}: {problem} (the campaign stopped)", file=sys.stderr,
            flush=True)
      write_running(state, None)
      return 2
    commit_uncommitted(plan, repo)
    todo = [r for r in plan["queue"] if not done(plan, r, repo)
            and failures.get(run_id(r), 0) < MAX_ATTEMPTS]
    if not todo:
      print(f"[{now()}] campaign: nothing left to run", flush=True)
      write_running(state, None)
      return 0
    run = todo[0]
    write_running(state, run)
    print(f"[{now()}] campaign: {run_id(run)} starts", flush=True)
    ok = execute(plan, run, state, repo)
    if not ok:
      failures[run_id(run)] = failures.get(run_id(run), 0) + 1
    print(f"[{now()}] campaign: {run_id(run)} {'done' if ok else 'FAILED'}", flush=True)
    write_running(state, None)


def finished_seconds(plan, repo=REPO):
  """{recipe: [seconds of each committed run]} from their run.json (train and eval)."""
  out = {}
  for run in plan["queue"]:
    path = os.path.join(result_dir(plan, run, repo), RUN_RECORD)
    if committed(plan, run, repo) and os.path.exists(path):
      record = read_json(path)
      out.setdefault(run["recipe"], []).append(record["train_s_logged"]
                                               + record["wall_s_this_start"]["eval"])
  return out


def estimate_s(plan, recipe: str, seconds) -> float:
  """Expected seconds of one run: the mean of the recipe's own finished runs, else the plan's
  estimate for the recipe (levers change the cost: wider kernels, longer schedules)."""
  if seconds.get(recipe):
    return statistics.mean(seconds[recipe])
  return float(plan["recipes"][recipe]["estimate_s"])


def status_lines(plan, state=STATE, repo=REPO):
  """What is done (with its mean layer Dice), running (epochs so far) and queued, and the
  compute left in hours."""
  seconds = finished_seconds(plan, repo)
  running = None
  path = os.path.join(state, RUNNING)
  if runner_alive(state):
    try:
      running = read_json(path)["run"]
    except (FileNotFoundError, ValueError):      # between two runs
      running = None
  lines, left = [], 0.0
  for run in plan["queue"]:
    rid = run_id(run)
    if done(plan, run, repo):
      m = json.load(open(os.path.join(result_dir(plan, run, repo), METRICS)))
      lines.append(f"done     {rid:40s} mean layer Dice "
                   f"{m['topology']['literature']['mean_layer_dice']:.4f}"
                   + fit_note(run))
      continue
    rows = training_log.workdir_rows(os.path.join(state, "runs", rid))
    est = estimate_s(plan, run["recipe"], seconds)
    spent = sum(float(r["seconds"]) for r in rows)
    left += max(est - spent, 0.0)
    state_word = "running" if rid == running else "queued"
    again = (" (results committed, model not: trains again to keep it)"
             if committed(plan, run, repo) else "")
    lines.append(f"{state_word:8s} {rid:40s} {len(rows)} epochs so far, "
                 f"~{est / 60:.0f} min each run{again}")
  lines.append(f"compute left: ~{left / 3600:.1f} h on this machine "
               f"({'runner alive' if running else 'runner not running'})")
  return lines


def main(argv=None) -> int:
  import argparse
  parser = argparse.ArgumentParser(description="The accuracy campaign's runner.")
  parser.add_argument("--plan", default=PLAN)
  parser.add_argument("--state", default=None, help=f"the runner's state folder ({STATE})")
  parser.add_argument("--status", action="store_true")
  args = parser.parse_args(argv)
  plan = load_plan(args.plan)
  problem = runnable_problem(plan, REPO)
  if problem:
    print(f"error: {args.plan}: {problem}", file=sys.stderr)
    return 2
  state = args.state or STATE
  if args.status:
    if not os.path.isdir(state):
      if args.state:
        print(f"error: --state={args.state}: no such folder", file=sys.stderr)
        return 2
      print(f"note: no runner state at {state} (the runner has not run beside this checkout): "
            "the runs in flight, if any, are not shown; --state=FOLDER reads another")
    print("\n".join(status_lines(plan, state)))
    return 0
  signal.signal(signal.SIGINT, signal.default_int_handler)   # kill -INT stops it, even when
  try:                                                        # started in the background
    status = run_campaign(args.plan, state)
  except KeyboardInterrupt:
    print(f"[{now()}] campaign: interrupted; the run in flight resumes from its last checkpoint "
          "when the runner is started again", flush=True)
    return 130
  return status


if __name__ == "__main__":
  sys.exit(main())
