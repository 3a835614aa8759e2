"""scripts/device_campaign.py, the lent-GPU driver: which runs start (time left, a broken install
stops the rest), what is packed for the trip back, and which recipe's fold models are packed.
Training is replaced by a fake, so no model is trained here."""

import concurrent.futures
import json
import os
import tarfile
import threading
import time
import types

import pytest

from conftest import load_script

dc = load_script("device_campaign")
ee = load_script("eval_ensemble")


def _plan(tmp_path, queue, ship=()):
  recipes = {r: {"config": "configs/duke_cpu.py", "overrides": {}} for r in ("base", "a", "b")}
  return {"duke_dir": "data", "results_dir": str(tmp_path / "results"), "recipes": recipes,
          "ship": list(ship), "queue": queue}


def _args(tmp_path, jobs=2):
  os.makedirs(tmp_path / "pack", exist_ok=True)
  return types.SimpleNamespace(jobs=jobs, state=str(tmp_path / "state"),
                               pack=str(tmp_path / "pack"), commit="abc")


def _finish(plan, run, args, dice):
  """What a finished run leaves: its workdir (best checkpoint, member files) and results."""
  workdir = os.path.join(args.state, "runs", dc.campaign.run_id(run))
  os.makedirs(os.path.join(workdir, "best", "7"))
  for name in ee.MEMBER_FILES + ("tensorboard", "checkpoints"):    # the last two stay here
    open(os.path.join(workdir, name), "w").write(name)
  with open(workdir + ".out", "w") as f:
    f.write("log of " + dc.campaign.run_id(run))
  dest = dc.campaign.result_dir(plan, run)
  os.makedirs(dest)
  json.dump({"topology": {"literature": {"mean_layer_dice": dice}}},
            open(os.path.join(dest, "metrics.json"), "w"))
  json.dump({}, open(os.path.join(dest, "run.json"), "w"))


def _failing(started):
  def execute(plan, run, args, deadline, env):
    started.append(dc.campaign.run_id(run))
    time.sleep(0.2)
    os.makedirs(os.path.join(args.state, "runs", "base"), exist_ok=True)
    open(os.path.join(args.state, "runs", dc.campaign.run_id(run) + ".out"), "w").write("boom")
    return False
  return execute


def _clock(last_start_in_s=60):
  return {"deadline": time.time() + 60, "last_start": time.time() + last_start_in_s}


def test_a_broken_install_stops_the_queue_after_the_runs_already_going(tmp_path, monkeypatch):
  queue = [{"recipe": "base", "fold": f, "seed": s} for s in (0, 1) for f in range(4)]
  plan, args = _plan(tmp_path, queue), _args(tmp_path, jobs=3)
  started = []
  monkeypatch.setattr(dc, "execute", _failing(started))
  state = {"started": [], "outcomes": {}}
  clock, lock = _clock(), threading.Lock()
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:    # as main runs them
    for f in [pool.submit(dc.worker, plan, r, args, clock, {}, lock, state)
              for r in queue]:
      f.result()
  assert sorted(started) == [dc.campaign.run_id(r) for r in queue[:3]]   # the first wave only
  # (sorted: the 3 threads of the first wave start in any order)
  assert [state["outcomes"][dc.campaign.run_id(r)] for r in queue] == [False] * 3 + [None] * 5
  with tarfile.open(tmp_path / "pack" / "logs.tar.gz") as tar:       # the failures come back
    assert sorted(tar.getnames()) == [f"base/fold{f}_seed0.out" for f in range(3)]


def test_a_run_after_a_failure_waits_for_a_success_and_then_starts():
  started, outcomes = ["a", "b"], {"a": False}
  def b_finishes_well():
    time.sleep(0.3)
    outcomes["b"] = True
  threading.Thread(target=b_finishes_well).start()
  assert dc.may_start(_clock(), started, outcomes) and outcomes["b"] is True
  assert dc.may_start(_clock(), [], {})                             # nothing started yet
  assert not dc.may_start(_clock(), ["a"], {"a": False})            # every started run failed


def test_no_run_starts_after_the_last_start_time(tmp_path, monkeypatch):
  run = {"recipe": "a", "fold": 0, "seed": 0}
  plan, args = _plan(tmp_path, [run]), _args(tmp_path)
  monkeypatch.setattr(dc, "execute", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
  state = {"started": [], "outcomes": {}}
  dc.worker(plan, run, args, _clock(-1), {}, threading.Lock(), state)
  assert state["outcomes"] == {"a/fold0_seed0": None}


def test_results_and_the_ship_recipe_with_most_folds_are_packed(tmp_path):
  queue = ([{"recipe": "a", "fold": f, "seed": 0} for f in range(3)]
           + [{"recipe": "b", "fold": f, "seed": 0} for f in range(2)]
           + [{"recipe": "b", "fold": 0, "seed": 1}])
  plan, args = _plan(tmp_path, queue, ship=["a", "b"]), _args(tmp_path)
  for run, dice in zip(queue, [0.80, 0.81, 0.82, 0.90, 0.91, 0.99]):
    _finish(plan, run, args, dice)
  assert dc.seed0_means(plan, args) == {"a": (0.81, 3), "b": (0.905, 2)}  # seed 1 not counted
  gone = {"recipe": "a", "fold": 3, "seed": 0}            # results from an earlier lease: no model
  plan["queue"].append(gone)
  os.makedirs(dc.campaign.result_dir(plan, gone))
  json.dump({"topology": {"literature": {"mean_layer_dice": 0.5}}},
            open(os.path.join(dc.campaign.result_dir(plan, gone), "metrics.json"), "w"))
  json.dump({}, open(os.path.join(dc.campaign.result_dir(plan, gone), "run.json"), "w"))
  assert dc.seed0_means(plan, args)["a"] == (0.81, 3)
  dc.pack_results(plan, args, threading.Lock())
  dc.pack_members(plan, args)
  assert sorted(os.listdir(args.pack)) == ["logs.tar.gz", "members_a_fold0_seed0.tar",
                                           "members_a_fold1_seed0.tar",
                                           "members_a_fold2_seed0.tar", "package_a.out",
                                           "results.tar.gz"]
  with tarfile.open(os.path.join(args.pack, "members_a_fold1_seed0.tar")) as tar:
    names = set(tar.getnames())
    assert tar.extractfile("fold1_seed0/split.json").read() == b"split.json"
  assert names == {"fold1_seed0"} | {f"fold1_seed0/{n}"
                                     for n in ee.MEMBER_FILES + ("best", "best/7")}
  with tarfile.open(os.path.join(args.pack, "results.tar.gz")) as tar:
    member = tar.extractfile(plan["results_dir"].lstrip("/") + "/b/fold0_seed1/metrics.json")
    assert json.load(member)["topology"]["literature"]["mean_layer_dice"] == 0.99


def test_a_command_past_its_deadline_is_stopped(tmp_path):
  log = str(tmp_path / "run.out")
  t0 = time.time()
  assert dc.campaign.run_logged(["sleep", "30"], str(tmp_path), log, 0, None, t0 + 1.5) == -9
  assert time.time() - t0 < 10
  assert dc.campaign.run_logged(["sh", "-c", "echo hi"], str(tmp_path), log, 0, None,
                                time.time() + 30) == 0
  assert open(log).read().rstrip().endswith("hi")


def test_each_run_may_grow_to_its_share_of_the_gpu_memory_and_no_more(tmp_path, monkeypatch):
  queue = [{"recipe": "a", "fold": f, "seed": 0} for f in range(2)]
  plan_path = tmp_path / "plan.json"
  plan_path.write_text(json.dumps(_plan(tmp_path, queue)))
  seen = []
  def execute(plan, run, args, deadline, env):       # what main hands each run's commands
    seen.append(env)
    return dc.campaign.run_logged(["sh", "-c", "echo $JAX_PLATFORMS $XLA_CLIENT_MEM_FRACTION "
                                   "$XLA_PYTHON_CLIENT_PREALLOCATE "
                                   "${XLA_PYTHON_CLIENT_MEM_FRACTION:-unset}"],
                                  str(tmp_path), str(tmp_path / "env.out"), 0, env) == 0
  monkeypatch.setattr(dc, "execute", execute)
  monkeypatch.setenv("OCTSEG_KEPT", "yes")
  monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")   # deprecated: would clash
  assert dc.main([f"--plan={plan_path}", "--commit=abc", "--duke_dir=data", "--jobs=8",
                  f"--pack={tmp_path / 'pack'}", f"--state={tmp_path / 'state'}"]) == 0
  assert len(seen) == 2 and all(env["OCTSEG_KEPT"] == "yes" for env in seen)
  lines = [l for l in open(tmp_path / "env.out").read().splitlines() if l and l[0] != "["]
  assert lines == ["cuda 0.1125 false unset"] * 2                # 0.9 of the GPU over 8 jobs


def test_jaxlib_reads_the_runs_memory_share_as_its_gpu_options(monkeypatch):
  from jaxlib import xla_client                 # what the CUDA plugin calls when it starts
  env = dc.run_env({"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5", "PATH": "/bin"}, 3)
  for k in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION",
            "XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_ALLOCATOR"):
    monkeypatch.delenv(k, raising=False)
    if k in env:                                  # only what the parser reads
      monkeypatch.setenv(k, env[k])
  options = xla_client.generate_pjrt_gpu_plugin_options()
  assert options["memory_fraction"] == 0.3 and options["preallocate"] is False
  monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")    # both set: jaxlib refuses
  with pytest.raises(ValueError):
    xla_client.generate_pjrt_gpu_plugin_options()


def test_packing_clears_an_earlier_calls_folders_and_a_failure_packs_nothing(tmp_path,
                                                                            monkeypatch):
  queue = [{"recipe": "a", "fold": f, "seed": 0} for f in range(2)]
  plan, args = _plan(tmp_path, queue, ship=["a"]), _args(tmp_path)
  for run in queue:
    _finish(plan, run, args, 0.8)
  for old in ("ensemble_a/members/stale", "ensemble_a.partial"):  # left by an earlier call
    os.makedirs(os.path.join(args.state, old))
  dc.pack_members(plan, args)
  assert sorted(f for f in os.listdir(args.pack) if f.endswith(".tar")) == [
      "members_a_fold0_seed0.tar", "members_a_fold1_seed0.tar"]
  assert sorted(os.listdir(args.state)) == ["runs"]          # the package folder is removed
  for f in os.listdir(args.pack):
    os.remove(os.path.join(args.pack, f))
  monkeypatch.setattr(dc.campaign, "run_logged", lambda cmd, cwd, log, *a: open(log, "w").write(
      "error: boom\n") and 2)
  dc.pack_members(plan, args)
  assert os.listdir(args.pack) == ["package_a.out"]          # why, and no member tar
  assert open(os.path.join(args.pack, "package_a.out")).read() == "error: boom\n"
