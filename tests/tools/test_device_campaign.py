"""scripts/device_campaign.py, the lent-GPU driver: which runs start (time left, a broken install
stops the rest), what is packed for the trip back, and which recipe's fold models are packed.
Training is replaced by a fake, so no model is trained here."""

import json
import os
import tarfile
import threading
import time
import types

from conftest import load_script

dc = load_script("device_campaign")


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
  for name in dc.MEMBER_FILES:
    open(os.path.join(workdir, name), "w").write(name)
  with open(workdir + ".out", "w") as f:
    f.write("log of " + dc.campaign.run_id(run))
  dest = dc.campaign.result_dir(plan, run)
  os.makedirs(dest)
  json.dump({"topology": {"literature": {"mean_layer_dice": dice}}},
            open(os.path.join(dest, "metrics.json"), "w"))
  json.dump({}, open(os.path.join(dest, "run.json"), "w"))


def test_a_broken_install_stops_the_queue_after_the_first_jobs_fail(tmp_path, monkeypatch):
  queue = [{"recipe": "base", "fold": f, "seed": 0} for f in range(4)]
  plan, args = _plan(tmp_path, queue), _args(tmp_path, jobs=2)
  started = []
  def failing(plan, run, args, deadline, env):
    started.append(dc.campaign.run_id(run))
    os.makedirs(os.path.join(args.state, "runs", "base"), exist_ok=True)
    open(os.path.join(args.state, "runs", dc.campaign.run_id(run) + ".out"), "w").write("boom")
    return False
  monkeypatch.setattr(dc, "execute", failing)
  clock = {"deadline": time.time() + 60, "last_start": time.time() + 60,
           "first": ["base/fold0_seed0", "base/fold1_seed0"]}
  outcomes = {}
  for run in queue:
    dc.worker(plan, run, args, clock, {}, threading.Lock(), outcomes)
  assert started == ["base/fold0_seed0", "base/fold1_seed0"]
  assert outcomes == {"base/fold0_seed0": False, "base/fold1_seed0": False,
                      "base/fold2_seed0": None, "base/fold3_seed0": None}
  with tarfile.open(tmp_path / "pack" / "logs.tar.gz") as tar:       # the failures come back
    assert sorted(tar.getnames()) == ["base/fold0_seed0.out", "base/fold1_seed0.out"]


def test_no_run_starts_after_the_last_start_time(tmp_path, monkeypatch):
  run = {"recipe": "a", "fold": 0, "seed": 0}
  plan, args = _plan(tmp_path, [run]), _args(tmp_path)
  monkeypatch.setattr(dc, "execute", lambda *a: (_ for _ in ()).throw(AssertionError("ran")))
  clock = {"deadline": time.time() + 60, "last_start": time.time() - 1, "first": ["a/fold0_seed0"]}
  outcomes = {}
  dc.worker(plan, run, args, clock, {}, threading.Lock(), outcomes)
  assert outcomes == {"a/fold0_seed0": None}


def test_results_and_the_ship_recipe_with_most_folds_are_packed(tmp_path):
  queue = ([{"recipe": "a", "fold": f, "seed": 0} for f in range(3)]
           + [{"recipe": "b", "fold": f, "seed": 0} for f in range(2)]
           + [{"recipe": "b", "fold": 0, "seed": 1}])
  plan, args = _plan(tmp_path, queue, ship=["a", "b"]), _args(tmp_path)
  for run, dice in zip(queue, [0.80, 0.81, 0.82, 0.90, 0.91, 0.99]):
    _finish(plan, run, args, dice)
  assert dc.seed0_means(plan) == {"a": (0.81, 3), "b": (0.905, 2)}   # seed 1 not counted
  dc.pack_results(plan, args, threading.Lock())
  dc.pack_members(plan, args)
  assert sorted(os.listdir(args.pack)) == ["logs.tar.gz", "members_a_fold0.tar",
                                           "members_a_fold1.tar", "members_a_fold2.tar",
                                           "results.tar.gz"]
  with tarfile.open(os.path.join(args.pack, "members_a_fold1.tar")) as tar:
    names = set(tar.getnames())
  assert names == {f"fold1_seed0/{n}" for n in dc.MEMBER_FILES + ("best", "best/7")}
  with tarfile.open(os.path.join(args.pack, "results.tar.gz")) as tar:
    member = tar.extractfile(plan["results_dir"].lstrip("/") + "/b/fold0_seed1/metrics.json")
    assert json.load(member)["topology"]["literature"]["mean_layer_dice"] == 0.99
