"""The campaign runner (scripts/campaign.py): queue order, pinned worktrees, results copied and
committed at once, committed runs skipped, a lost run restarted, and --status. Training and
scoring are replaced by a fake that writes what they write, so no model is trained here."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import load_script

campaign = load_script("campaign")


def _git(repo, *args):
  return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                        text=True).stdout.strip()


# The config schema of the test repository's commit, as text (the runner reads field names and
# the default data.num_folds from it without importing it).
SCHEMA_TEXT = """FIELDS: Dict[str, Field] = {
    "seed": F(0, v.int_at_least(0), "everything random"),
    "data.num_folds": F(4, v.int_at_least(2)),
    "model.kernel": F((3, 3), v.int_tuple(2)),
    "train.num_epochs": F(40, v.int_at_least(1)),
}
"""


def _repo(tmp_path, keep_first=False):
  """A git repository with a plan of two recipes and one run of each (the first keeps its
  model with `keep_first`); returns it and the plan's path."""
  repo = tmp_path / "repo"
  os.makedirs(repo / "configs")
  os.makedirs(repo / "octseg_jax" / "config")
  (repo / "octseg_jax" / "__init__.py").write_text("")
  (repo / "octseg_jax" / "config" / "schema.py").write_text(SCHEMA_TEXT)
  _git(repo, "init", "-q")
  _git(repo, "config", "user.email", "t@example.com")
  _git(repo, "config", "user.name", "t")
  _git(repo, "add", "-A")
  _git(repo, "commit", "-qm", "code")
  sha = _git(repo, "rev-parse", "HEAD")
  plan = {"duke_dir": "data", "results_dir": "docs/results/campaign",
          "recipes": {"base": {"config": "configs/x.py", "overrides": {}, "commit": sha,
                               "estimate_s": 600},
                      "lever": {"config": "configs/x.py", "overrides": {"model.kernel": [7, 3]},
                                "commit": sha, "estimate_s": 900}},
          "queue": [{"recipe": "base", "fold": 0, "seed": 0, "keep_model": keep_first},
                    {"recipe": "lever", "fold": 0, "seed": 0}]}
  (repo / "configs" / "campaign.json").write_text(json.dumps(plan))
  _git(repo, "add", "-A")
  _git(repo, "commit", "-qm", "plan")
  return repo, str(repo / "configs" / "campaign.json")


def _fake_run(calls, fail_once=None, log_csv="epoch,train_loss,seconds\n1,4.0,10.5\n2,3.0,11.5\n"):
  """Stands in for run_logged: writes a workdir's files (train: with `log_csv` and a best/
  checkpoint folder) or an eval folder's; the first train call of the run `fail_once` fails."""
  failed = []

  def run_logged(cmd, cwd, log_path):
    calls.append((cmd, cwd))
    args = dict(a[2:].split("=", 1) for a in cmd[2:] if a.startswith("--") and "=" in a)
    if "--mode=eval" in cmd:
      os.makedirs(args["output"], exist_ok=True)
      dice = 0.8 if "lever" in args["workdir"] else 0.7
      with open(os.path.join(args["output"], "metrics.json"), "w") as f:
        json.dump({"topology": {"literature": {"mean_layer_dice": dice}}}, f)
      return 0
    if fail_once and args["workdir"].endswith(fail_once) and not failed:
      failed.append(1)
      return 1
    os.makedirs(args["workdir"], exist_ok=True)
    for name in ("config.json", "split.json", "provenance.json"):
      open(os.path.join(args["workdir"], name), "w").write("{}")
    open(os.path.join(args["workdir"], "log.csv"), "w").write(log_csv)
    os.makedirs(os.path.join(args["workdir"], "best", "2"), exist_ok=True)
    open(os.path.join(args["workdir"], "best", "2", "weights"), "w").write(args["workdir"])
    return 0

  return run_logged


def test_commands_pass_fold_seed_data_and_overrides(tmp_path):
  repo, plan_path = _repo(tmp_path)
  plan = campaign.load_plan(plan_path)
  train, evaluate = campaign.commands(plan, plan["queue"][1], "/w", "/w_eval", str(repo))
  assert train[1:] == ["main.py", "--config=configs/x.py", "--workdir=/w", "--config.seed=0",
                       "--config.data.split=subject", "--config.data.fold=0",
                       f"--config.data.duke_dir={os.path.abspath(os.path.join(repo, 'data'))}",
                       "--config.model.kernel=(7,3)"]
  assert evaluate[1:] == ["main.py", "--mode=eval", "--workdir=/w", "--output=/w_eval"]
  assert campaign.override_arg("model.widths", [4]) == "--config.model.widths=(4,)"
  plan["recipes"]["lever"]["fold_overrides"] = {"1": {"data.subjects": [3, 4, 7, 8],
                                                      "model.kernel": [5, 3]}}
  for fold, tail in ((0, ["--config.model.kernel=(7,3)"]),      # no entry for fold 0
                     (1, ["--config.model.kernel=(5,3)", "--config.data.subjects=(3,4,7,8)"])):
    train, _ = campaign.commands(plan, {"recipe": "lever", "fold": fold, "seed": 0}, "/w",
                                 "/w_eval", str(repo))
    assert train[8:] == tail and train[6] == f"--config.data.fold={fold}"


def test_a_recipe_scored_on_named_subjects_and_a_run_on_every_subject(tmp_path):
  """A recipe whose validation split is its training scans names the subjects each fold is
  scored on: eval reads WORKDIR_scored, links to exactly those subjects' files of duke_dir
  (made again each time); a fold 'all' run trains on every subject (data.split 'all', no
  data.fold) and is scored as it is (its fit)."""
  repo, plan_path = _repo(tmp_path)
  plan = campaign.load_plan(plan_path)
  os.makedirs(repo / "data")
  for name in ("subject_01.npz", "subject_03.npz", "subject_04.npz", "Subject_13.mat"):
    (repo / "data" / name).write_text(name)
  plan["recipes"]["lever"]["score_subjects"] = {"1": [3, 4]}
  workdir = str(tmp_path / "runs" / "lever" / "fold1_seed0")
  run = {"recipe": "lever", "fold": 1, "seed": 0}
  _, evaluate = campaign.commands(plan, run, workdir, workdir + "_eval", str(repo))
  assert evaluate[-1] == f"--input={workdir}_scored"
  os.makedirs(workdir + "_scored")
  os.symlink(str(repo / "data" / "subject_01.npz"), workdir + "_scored/subject_01.npz")  # stale
  campaign.scored_input(plan, run, workdir, str(repo))
  links = sorted(os.listdir(workdir + "_scored"))
  assert links == ["subject_03.npz", "subject_04.npz"]
  assert [open(os.path.join(workdir + "_scored", n)).read() for n in links] == links
  _, evaluate = campaign.commands(plan, {"recipe": "lever", "fold": 0, "seed": 0}, "/w",
                                  "/w_eval", str(repo))
  assert evaluate[-1] == "--output=/w_eval"                   # no score_subjects for fold 0
  every = {"recipe": "base", "fold": "all", "seed": 2}
  train, evaluate = campaign.commands(plan, every, "/w", "/w_eval", str(repo))
  assert train[4:6] == ["--config.seed=2", "--config.data.split=all"]
  assert not any(a.startswith("--config.data.fold") for a in train)
  assert evaluate[-1] == "--output=/w_eval"
  assert campaign.run_id(every) == "base/all_seed2"
  assert campaign.run_parts("base/all_seed2") == ("base", "all", 2)
  assert campaign.fit_note(every) == " [the fit on its training scans, not new eyes]"
  assert campaign.fit_note(run) == ""


def test_runner_commits_each_run_skips_committed_ones_and_reports_status(tmp_path, monkeypatch):
  repo, plan_path = _repo(tmp_path)
  state = str(tmp_path / "state")
  calls = []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls, fail_once="lever/fold0_seed0"))
  sha = campaign.load_plan(plan_path)["recipes"]["base"]["commit"]
  (repo / "wip.txt").write_text("work in progress on main")      # must not be committed
  _git(repo, "add", "wip.txt")
  campaign.run_campaign(plan_path, state, str(repo))
  # base trained + scored; lever failed once, then trained + scored on its second attempt
  assert len(calls) == 5
  assert all(cwd == os.path.join(state, "worktrees", sha[:12]) for _, cwd in calls)
  assert open(os.path.join(state, "worktrees", sha[:12], "octseg_jax", "__init__.py")).read() == ""
  log = _git(repo, "log", "--format=%s")
  assert "Campaign: base/fold0_seed0 results (mean layer Dice 0.7000" in log
  assert "Campaign: lever/fold0_seed0 results (mean layer Dice 0.8000" in log
  assert _git(repo, "diff", "--cached", "--name-only") == "wip.txt"   # still staged only
  record = json.load(open(repo / "docs/results/campaign/base/fold0_seed0/run.json"))
  assert record["epochs"] == 2 and record["train_s_logged"] == 22.0
  assert sorted(os.listdir(repo / "docs/results/campaign/base/fold0_seed0")) == sorted(
      ["config.json", "split.json", "provenance.json", "log.csv", "metrics.json", "run.json"])
  calls.clear()
  campaign.run_campaign(plan_path, state, str(repo))                # everything committed
  assert calls == []
  lines = campaign.status_lines(campaign.load_plan(plan_path), state, str(repo))
  assert lines[0].startswith("done     base/fold0_seed0") and "0.7000" in lines[0]
  assert lines[-1].startswith("compute left: ~0.0 h")


def test_a_run_whose_scored_files_cannot_be_linked_fails_alone_and_links_are_recorded(
    tmp_path, monkeypatch):
  """A score_subjects run whose subjects have no file in duke_dir fails (twice, the reason in
  its log) without stopping the runner, which goes on to the next run; a run whose files are
  there is scored on exactly them, and its run.json records the links. A fold 'all' run's
  commit message and --status line name its score a fit."""
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  plan["recipes"]["lever"]["score_subjects"] = {"0": [9]}          # no subject_09 file
  plan["recipes"]["nv"] = dict(plan["recipes"]["base"], score_subjects={"1": [3]})
  plan["queue"] = [{"recipe": "lever", "fold": 0, "seed": 0}, {"recipe": "nv", "fold": 1,
                                                                "seed": 0},
                   {"recipe": "base", "fold": "all", "seed": 0}]
  open(plan_path, "w").write(json.dumps(plan))
  os.makedirs(repo / "data")
  (repo / "data" / "subject_03.npz").write_text("3")
  state = str(tmp_path / "state")
  calls = []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls))
  campaign.run_campaign(plan_path, state, str(repo))
  evals = [cmd for cmd, _ in calls if "--mode=eval" in cmd]
  assert len(evals) == 2 and evals[0][-1] == f"--input={state}/runs/nv/fold1_seed0_scored"
  assert open(f"{state}/runs/lever/fold0_seed0.out").read().count(
      "campaign: cannot link the files lever/fold0_seed0 is scored on: ") == 2
  record = json.load(open(repo / "docs/results/campaign/nv/fold1_seed0/run.json"))
  assert record["scored_files"] == {"subject_03.npz": str(repo / "data" / "subject_03.npz")}
  assert "scored_files" not in json.load(open(repo / "docs/results/campaign/base/all_seed0/"
                                              "run.json"))
  log = _git(repo, "log", "--format=%s")
  assert ("Campaign: base/all_seed0 results (mean layer Dice 0.7000 [the fit on its training "
          "scans, not new eyes], order fix on, native resolution)") in log
  lines = campaign.status_lines(campaign.load_plan(plan_path), state, str(repo))
  assert lines[0].startswith("queued   lever/fold0_seed0")
  assert lines[2].endswith("0.7000 [the fit on its training scans, not new eyes]")


def test_a_missing_duke_dir_is_named_as_the_plan_s(tmp_path):
  """scored_input's message for a plan whose duke_dir does not exist names the plan's field,
  not eval's option, and no folder of links is made."""
  from octseg_jax.errors import InputError
  repo, plan_path = _repo(tmp_path)
  plan = dict(campaign.load_plan(plan_path), duke_dir="gone")
  plan["recipes"]["lever"]["score_subjects"] = {"0": [3]}
  run = {"recipe": "lever", "fold": 0, "seed": 0}
  with pytest.raises(InputError) as e:
    campaign.scored_input(plan, run, str(tmp_path / "wd"), str(repo))
  assert str(e.value) == f"{repo / 'gone'}: no such folder (set the plan's duke_dir)"
  assert not os.path.exists(tmp_path / "wd_scored")


@pytest.mark.parametrize("change,message", [
    ({"score_subjects": {"1": []}},
     "score_subjects of fold 1 must be a non-empty list of subject numbers, not []"),
    ({"cross_validation": "lever_typo"},
     "cross_validation must name another recipe of the plan, of kind validation_free"),
    ({"cross_validation": "base"},
     "cross_validation must name another recipe of the plan, of kind validation_free"),
    ({"cross_validation": "lever", "kind": "validation_free"},
     "cross_validation must name another recipe of the plan, of kind validation_free")])
def test_a_plan_with_a_bad_recipe_field_is_refused(tmp_path, capsys, change, message):
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  plan["recipes"]["lever"].update(change)
  open(plan_path, "w").write(json.dumps(plan))
  with pytest.raises(SystemExit) as stop:
    campaign.load_plan(plan_path)
  assert stop.value.code == 2
  assert capsys.readouterr().err == f"error: {plan_path}: recipe lever: {message}\n"


@pytest.mark.parametrize("change,message", [
    ({"keep_model": "yes"}, "keep_model must be true or false"),
    ({"seed": "zero"}, "seed must be a whole number from 0"),
    ({"fold": -1}, 'fold must be a fold number from 0 or "all"'),
    ({"keep_modle": True}, "unknown key 'keep_modle'"),
    ({"recipe": "levr"}, "names no recipe of the plan")])
def test_a_queue_entry_with_a_bad_field_is_refused(tmp_path, capsys, change, message):
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  plan["queue"][1].update(change)
  open(plan_path, "w").write(json.dumps(plan))
  with pytest.raises(SystemExit) as stop:
    campaign.load_plan(plan_path)
  assert stop.value.code == 2
  assert capsys.readouterr().err == (f"error: {plan_path}: run {json.dumps(plan['queue'][1])}: "
                                     f"{message}\n")


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.pop("queue"), "needs 'queue', a JSON list"),
    (lambda p: p["recipes"]["lever"].pop("config"), "recipe lever: needs 'config', a config file"),
    (lambda p: p["recipes"]["lever"].update(estimate_s=0),
     "recipe lever: estimate_s must be a positive number of seconds, not 0"),
    (lambda p: p["recipes"]["lever"].update(kind="learning"),
     "recipe lever: kind must be one of learning_curve, validation_free, final, not 'learning'"),
    (lambda p: p["recipes"]["lever"].update(estimate_s=True),
     "recipe lever: estimate_s must be a positive number of seconds, not True"),
    (lambda p: p["recipes"]["lever"].update(fold_overrides=[]),
     'recipe lever: overrides must be an object {field: value}, fold_overrides one of such '
     'objects per fold {"F": {field: value}}'),
    (lambda p: p["recipes"]["lever"].update(score_subjects=[]),
     'recipe lever: score_subjects must be an object {"F": [subject numbers]}'),
    (lambda p: p["recipes"]["lever"].update(cross_validation=["base"]),
     "recipe lever: cross_validation must name another recipe of the plan, of kind "
     "validation_free"),
    (lambda p: p["queue"][1].update(recipe=["lever"]),
     'run {"recipe": ["lever"], "fold": 0, "seed": 0}: names no recipe of the plan'),
    (lambda p: p.update(comparisons={"lever": "base"}), "comparisons must be a JSON list"),
    (lambda p: p.update(comparisons=[{"recipe": "lever", "against": "bse"}]),
     'comparison {"recipe": "lever", "against": "bse"}: needs \'recipe\' and \'against\', '
     "recipes of the plan")])
def test_a_plan_missing_a_field_or_naming_no_recipe_is_refused(tmp_path, capsys, edit, message):
  """What --status and the table would otherwise meet as a KeyError, or table in silence."""
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  edit(plan)
  open(plan_path, "w").write(json.dumps(plan))
  with pytest.raises(SystemExit) as stop:
    campaign.load_plan(plan_path)
  assert stop.value.code == 2
  assert capsys.readouterr().err == f"error: {plan_path}: {message}\n"


def test_a_plan_edited_wrongly_while_the_runner_runs_stops_it_before_the_next_run(
    tmp_path, monkeypatch, capsys):
  """The plan is checked again before each run: an override misspelt on main while the first
  run trains stops the runner with one line and status 2; the first run is committed and the
  second never starts."""
  repo, plan_path = _repo(tmp_path)
  calls = []
  fake = _fake_run(calls)

  def run_and_edit(cmd, cwd, log_path):
    plan = json.loads(open(plan_path).read())
    plan["recipes"]["lever"]["overrides"] = {"model.kernal": [7, 3]}
    open(plan_path, "w").write(json.dumps(plan))
    return fake(cmd, cwd, log_path)

  monkeypatch.setattr(campaign, "run_logged", run_and_edit)
  assert campaign.run_campaign(plan_path, str(tmp_path / "state"), str(repo)) == 2
  sha = json.loads(open(plan_path).read())["recipes"]["lever"]["commit"]
  assert capsys.readouterr().err == (f"error: {plan_path}: recipe lever: override model.kernal "
                                     f"is not a config field at its commit {sha} (the campaign "
                                     "stopped)\n")
  assert [c for c in calls if "lever" in " ".join(c[0])] == []
  assert "base/fold0_seed0" in _git(repo, "log", "-1", "--format=%s")


def test_the_runner_and_status_import_no_jax(tmp_path):
  """The runner and --status read the plan and the schema as text: no JAX in their process
  (a 2.5 s, 200 MB import, and main's code, which may be mid-edit)."""
  repo, plan_path = _repo(tmp_path)
  code = ("import sys; sys.path.insert(0, 'scripts'); import campaign; "
          f"campaign.REPO = {str(repo)!r}; "
          f"code = campaign.main(['--status', '--plan={plan_path}', '--state={tmp_path}']); "
          "print(code, 'jax' in sys.modules)")
  from conftest import ROOT
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert out.stdout.splitlines()[-1] == "0 False", out.stderr


@pytest.mark.parametrize("change,message", [
    ({"commit": "deadbeef"}, "recipe lever: commit 'deadbeef' is not a commit of {repo}"),
    ({"estimate_s": None}, "recipe lever: needs 'commit' (the commit its runs check out) and "
                           "'estimate_s' (the seconds one run is expected to take)"),
    ({"overrides": {"model.kernal": [7, 3]}},
     "recipe lever: override model.kernal is not a config field at its commit {sha}"),
    ({"fold_overrides": {"0": {"train.ema_decay": 0.98}}},       # a field of later commits
     "recipe lever: override train.ema_decay is not a config field at its commit {sha}"),
    ({"fold": 4}, 'run {"recipe": "lever", "fold": 4, "seed": 0}: fold 4 is beyond the recipe\'s '
                  "4 folds (data.num_folds)"),
    ({"overrides": {"data.num_folds": 2}, "fold": 3},
     'run {"recipe": "lever", "fold": 3, "seed": 0}: fold 3 is beyond the recipe\'s 2 folds '
     "(data.num_folds)")])
def test_a_run_that_could_not_start_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                                    change, message):
  """--status and the runner check each queued run's commit, its overrides' fields against the
  config schema at that commit and its fold before any run starts: one line and status 2,
  nothing trained."""
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  plan["recipes"]["lever"].update({k: v for k, v in change.items() if k != "fold"})
  plan["recipes"]["lever"] = {k: v for k, v in plan["recipes"]["lever"].items() if v is not None}
  plan["queue"][1]["fold"] = change.get("fold", 0)
  open(plan_path, "w").write(json.dumps(plan))
  monkeypatch.setattr(campaign, "REPO", str(repo))
  calls = []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls))
  sha = plan["recipes"]["lever"].get("commit", "")
  state = str(tmp_path / "state")
  want = message.replace("{repo}", str(repo)).replace("{sha}", sha)
  for args in (["--status"], []):
    assert campaign.main(args + [f"--plan={plan_path}", f"--state={state}"]) == 2
    assert capsys.readouterr().err == f"error: {plan_path}: {want}\n"
  assert calls == [] and not os.path.exists(state)


def test_a_final_recipe_names_its_validation_free_cross_validation(tmp_path):
  repo, plan_path = _repo(tmp_path)
  plan = json.loads(open(plan_path).read())
  plan["recipes"]["base"]["kind"] = "validation_free"
  plan["recipes"]["lever"].update({"kind": "final", "cross_validation": "base"})
  open(plan_path, "w").write(json.dumps(plan))
  assert campaign.load_plan(plan_path)["recipes"]["lever"]["cross_validation"] == "base"


def test_status_names_a_missing_state_folder(tmp_path, monkeypatch, capsys):
  """--status beside a checkout where the runner never ran says so (runs in flight elsewhere
  are not shown); a --state that does not exist is an error."""
  repo, plan_path = _repo(tmp_path)
  monkeypatch.setattr(campaign, "STATE", str(tmp_path / "nowhere"))
  monkeypatch.setattr(campaign, "REPO", str(repo))
  assert campaign.main(["--status", f"--plan={plan_path}"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith(f"note: no runner state at {tmp_path / 'nowhere'} (the runner has "
                           "not run beside this checkout)")
  assert campaign.main(["--status", f"--plan={plan_path}", f"--state={tmp_path / 'x'}"]) == 2
  assert capsys.readouterr().err == f"error: --state={tmp_path / 'x'}: no such folder\n"


def test_a_kept_model_is_committed_and_one_lost_trains_again(tmp_path, monkeypatch):
  """A queue entry with keep_model commits its best/ folder with its results (the other run's
  results have none); a run whose results are committed but whose model is not trains again
  (status says so), and the commit says whether the new log.csv equals the committed one."""
  repo, plan_path = _repo(tmp_path, keep_first=True)
  state, calls = str(tmp_path / "state"), []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls))
  campaign.run_campaign(plan_path, state, str(repo))
  kept = "docs/results/campaign/base/fold0_seed0/best/2/weights"
  assert _git(repo, "show", f"HEAD:{kept}") == f"{state}/runs/base/fold0_seed0"
  assert "best" not in os.listdir(repo / "docs/results/campaign/lever/fold0_seed0")
  assert "0.7000, order fix on, native resolution, model kept)" in _git(repo, "log", "--format=%s")
  for log_csv, note in (("epoch,train_loss,seconds\n1,4.0,9.5\n2,3.0,12.5\n",
                         "its log.csv equals the committed one, but for the seconds"),
                        ("epoch,train_loss,seconds\n1,4.0,9.5\n2,3.1,12.5\n",
                         "its log.csv DIFFERS from the committed one, which these results "
                         "replace")):
    _git(repo, "rm", "-rq", "docs/results/campaign/base/fold0_seed0/best")
    _git(repo, "commit", "-qm", "model lost")
    shutil.rmtree(state)
    line = campaign.status_lines(campaign.load_plan(plan_path), state, str(repo))[0]
    assert line == (f"queued   {'base/fold0_seed0':40s} 0 epochs so far, ~0 min each run "
                    "(results committed, model not: trains again to keep it)")
    calls.clear()
    monkeypatch.setattr(campaign, "run_logged", _fake_run(calls, log_csv=log_csv))
    campaign.run_campaign(plan_path, state, str(repo))
    assert len(calls) == 2 and _git(repo, "show", f"HEAD:{kept}").endswith("base/fold0_seed0")
    assert _git(repo, "log", "-1", "--format=%s").endswith(
        "model kept); it ran again to keep its model: " + note)


def test_results_copied_but_not_committed_are_committed_on_restart_with_their_message(
    tmp_path, monkeypatch):
  """A runner stopped between copying a kept run's results and committing them: the next
  runner commits them with the message the first would have written, without training again."""
  repo, plan_path = _repo(tmp_path, keep_first=True)
  state, calls = str(tmp_path / "state"), []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls))
  commit = campaign.commit_results

  def stopped(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(campaign, "commit_results", stopped)
  with pytest.raises(KeyboardInterrupt):
    campaign.run_campaign(plan_path, state, str(repo))
  assert len(calls) == 2 and "Campaign" not in _git(repo, "log", "--format=%s")
  monkeypatch.setattr(campaign, "commit_results", commit)
  campaign.run_campaign(plan_path, state, str(repo))
  assert len(calls) == 4                                     # only the second run trained
  assert ("Campaign: base/fold0_seed0 results (mean layer Dice 0.7000, order fix on, native "
          "resolution, model kept) [committed on restart]") in _git(repo, "log", "--format=%s")
  assert _git(repo, "ls-files", "docs/results/campaign/base/fold0_seed0/best")


def test_a_run_without_committed_results_runs_again(tmp_path, monkeypatch):
  repo, plan_path = _repo(tmp_path)
  state = str(tmp_path / "state")
  calls = []
  monkeypatch.setattr(campaign, "run_logged", _fake_run(calls))
  plan = campaign.load_plan(plan_path)
  lines = campaign.status_lines(plan, state, str(repo))
  assert lines[0].startswith("queued   base/fold0_seed0")
  assert lines[-1] == "compute left: ~0.4 h on this machine (runner not running)"   # 600 + 900 s
  campaign.run_campaign(plan_path, state, str(repo))
  _git(repo, "reset", "-q", "--hard", "HEAD~2")                        # results lost
  calls.clear()
  campaign.run_campaign(plan_path, state, str(repo))
  assert len(calls) == 4


def test_lever_table_pairs_runs_with_the_base_and_adopts_beyond_seed_noise(monkeypatch):
  """Base on folds 0-1 with seeds 0-1 (noise = mean |seed gap| = 0.01) plus folds 2-3 with
  seed 0 only; lever A gains 0.02 on every screen pair (adopted), lever B 0.005 (not), lever C
  lacks a screen pair (not decided), whatever the extra base folds."""
  table_script = load_script("campaign_table")
  dice = {("base", 0, 0): 0.80, ("base", 0, 1): 0.81, ("base", 1, 0): 0.70,
          ("base", 1, 1): 0.71, ("base", 2, 0): 0.75, ("base", 3, 0): 0.76}
  for f, s in [(0, 0), (0, 1), (1, 0), (1, 1)]:
    dice[("a", f, s)] = dice[("base", f, s)] + 0.02
    dice[("b", f, s)] = dice[("base", f, s)] + 0.005
  dice[("c", 0, 0)] = 0.9
  plan = {"recipes": {n: {"config": "configs/x.py"} for n in ("base", "a", "b", "c")},
          "queue": [{"recipe": r, "fold": f, "seed": s} for r, f, s in dice]}
  monkeypatch.setattr(table_script, "run_numbers", lambda plan, run, repo: {
      "mean_layer_dice": dice[(run["recipe"], run["fold"], run["seed"])], "boundary_mae_um": 5.0,
      "train_s": 60.0})
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)
  t = table_script.lever_table(plan, repo="unused")
  assert abs(t["seed_noise"] - 0.01) < 1e-12 and len(t["seed_gaps"]) == 2
  r = t["recipes"]
  assert abs(r["a"]["mean_gain"] - 0.02) < 1e-12 and r["a"]["adopted"]
  assert abs(r["b"]["mean_gain"] - 0.005) < 1e-12 and not r["b"]["adopted"]
  assert r["c"]["paired_gains"] == {"fold0_seed0": 0.9 - 0.8} and not r["c"]["adopted"]
  assert r["base"]["runs"] == 6 and not r["base"]["adopted"]


def test_the_table_of_a_plan_being_edited_can_be_previewed_without_writing(tmp_path, monkeypatch,
                                                                        capsys):
  """--dry_run prints the table and writes nothing; without it levers.json and levers.md are
  written in the plan's results_dir (relative to the checkout)."""
  table_script = load_script("campaign_table")
  repo, plan_path = _repo(tmp_path)
  monkeypatch.setattr(table_script.campaign, "REPO", str(repo))
  monkeypatch.setattr(table_script, "run_numbers", lambda plan, run, repo: None)
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)
  out = repo / "docs" / "results" / "campaign"
  assert table_script.main([f"--plan={plan_path}", "--dry_run"]) == 0
  printed = capsys.readouterr().out
  assert printed.startswith("| recipe | runs |") and not out.exists()
  assert table_script.main([f"--plan={plan_path}"]) == 0
  assert (out / "levers.md").read_text() + "\n" == capsys.readouterr().out == printed
  assert json.loads((out / "levers.json").read_text())["recipes"]["lever"]["runs"] == 0


def test_comparison_pairs_a_candidate_with_the_recipe_it_would_replace(monkeypatch):
  """Noise 0.01 (base seed gaps on folds 0-1). Candidate n against shipped s: s ran folds 0-3
  with seed 0 and fold 0 with seed 1; n gains 0.02, 0.01, 0.03 on (0,0), (1,0), (0,1) and has no
  fold 2-3 yet (undecided), then 0.00 and 0.04 there (mean 0.02 > 0.01: replaces); a candidate
  gaining 0.005 everywhere is decided against."""
  table_script = load_script("campaign_table")
  dice = {("base", 0, 0): 0.80, ("base", 0, 1): 0.81, ("base", 1, 0): 0.70, ("base", 1, 1): 0.71}
  for f in range(4):
    dice[("s", f, 0)] = 0.6 + f / 10
    dice[("w", f, 0)] = dice[("s", f, 0)] + 0.005
  dice[("s", 0, 1)] = 0.65
  dice.update({("n", 0, 0): 0.62, ("n", 1, 0): 0.71, ("n", 0, 1): 0.68})
  monkeypatch.setattr(table_script, "run_numbers", lambda plan, run, repo: {
      "mean_layer_dice": dice[(run["recipe"], run["fold"], run["seed"])], "boundary_mae_um": 5.0,
      "train_s": 60.0})
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)

  def table():
    plan = {"recipes": {n: {"config": "configs/x.py"} for n in ("base", "s", "n", "w")},
            "queue": [{"recipe": r, "fold": f, "seed": s} for r, f, s in dice],
            "comparisons": [{"recipe": "n", "against": "s"}, {"recipe": "w", "against": "s"}]}
    return table_script.lever_table(plan, repo="unused")["comparisons"]

  n, w = table()
  assert n["paired_gains"].keys() == {"fold0_seed0", "fold1_seed0", "fold0_seed1"}
  assert abs(n["mean_gain"] - 0.02) < 1e-12 and n["folds_needed"] == [0, 1, 2, 3]
  assert not n["complete"] and not n["replaces"]
  assert w["complete"] and abs(w["mean_gain"] - 0.005) < 1e-12 and not w["replaces"]
  dice.update({("n", 2, 0): 0.80, ("n", 3, 0): 0.94})
  n, _ = table()
  assert n["complete"] and abs(n["mean_gain"] - 0.02) < 1e-12 and n["replaces"]


def test_a_comparison_waits_for_the_other_recipes_queued_folds(monkeypatch):
  """The other recipe t has folds 0-3 in the plan but has only run fold 0: a candidate that
  beats it there by far is not decided on that one pair; against a recipe with no seed-0 run
  in the plan the verdict says so."""
  table_script = load_script("campaign_table")
  done = {("base", 0, 0): 0.80, ("base", 0, 1): 0.81, ("t", 0, 0): 0.80, ("c", 0, 0): 0.90}
  queue = [{"recipe": r, "fold": f, "seed": s} for r, f, s in done]
  queue += [{"recipe": r, "fold": f, "seed": 0} for r in ("t", "c") for f in (1, 2, 3)]
  monkeypatch.setattr(table_script, "run_numbers", lambda plan, run, repo: None if (
      run["recipe"], run["fold"], run["seed"]) not in done else {
      "mean_layer_dice": done[(run["recipe"], run["fold"], run["seed"])],
      "boundary_mae_um": 5.0, "train_s": 60.0})
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)
  plan = {"recipes": {n: {"config": "configs/x.py"} for n in ("base", "t", "c", "u")},
          "queue": queue,
          "comparisons": [{"recipe": "c", "against": "t"}, {"recipe": "c", "against": "u"}]}
  table = table_script.lever_table(plan, repo="unused")
  c_t, c_u = table["comparisons"]
  assert c_t["paired_gains"].keys() == {"fold0_seed0"} and c_t["folds_needed"] == [0, 1, 2, 3]
  assert not c_t["complete"] and not c_t["replaces"]
  text = table_script.markdown(table)
  assert "c against t: fold0_seed0: +0.1000; mean +0.1000; undecided (folds 0, 1, 2, 3 of both " \
      "needed)." in text
  assert "c against u: n/a; mean n/a; undecided (u has no seed-0 run in the plan)." in text


@pytest.mark.parametrize("kind,verdict", [
    ("learning_curve", "a learning curve, no verdict"),
    ("validation_free", "read by the rule of docs/results.md section 11")])
def test_a_reading_is_never_adopted_nor_replaces_its_recipe(monkeypatch, kind, verdict):
  """A recipe of a reading kind (fewer training subjects per fold; no validation pair) that,
  against all sense, beats the recipe it is read against by far on every fold is neither
  adopted nor a replacement: the table gives its own verdict; its fold_overrides are listed as
  options."""
  table_script = load_script("campaign_table")
  done = {(r, f, s): dice for f in range(4) for s in (0, 1)
          for r, dice in (("base", 0.80), ("t", 0.80), ("lc", 0.90))}
  monkeypatch.setattr(table_script, "run_numbers", lambda plan, run, repo: {
      "mean_layer_dice": done[(run["recipe"], run["fold"], run["seed"])],
      "boundary_mae_um": 5.0, "train_s": 60.0})
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)
  plan = {"recipes": {"base": {"config": "x"}, "t": {"config": "x"},
                      "lc": {"config": "x", "kind": kind,
                             "fold_overrides": {"0": {"data.subjects": [1, 2, 5]}}}},
          "queue": [{"recipe": r, "fold": f, "seed": s} for r, f, s in done],
          "comparisons": [{"recipe": "lc", "against": "t"}]}
  table = table_script.lever_table(plan, repo="unused")
  (c,) = table["comparisons"]
  assert c["complete"] and abs(c["mean_gain"] - 0.1) < 1e-12 and not c["replaces"]
  assert not table["recipes"]["lc"]["adopted"]
  assert table["recipes"]["lc"]["fold_override_args"] == {"0": ["--config.data.subjects=(1,2,5)"]}
  assert f"; {verdict}." in table_script.markdown(table)


def test_a_final_recipe_has_no_row_and_its_fit_is_never_read(monkeypatch):
  """A recipe of kind final (fold 'all' runs, trained on every subject for pretrained/) has no
  held-out score: the table gives it no row and never reads its runs' numbers."""
  table_script = load_script("campaign_table")
  read = []

  def numbers(plan, run, repo):
    read.append(run["recipe"])
    return {"mean_layer_dice": 0.8, "boundary_mae_um": 5.0, "train_s": 60.0}
  monkeypatch.setattr(table_script, "run_numbers", numbers)
  monkeypatch.setattr(table_script, "gflop_per_bscan", lambda recipe: 1.0)
  plan = {"recipes": {"base": {"config": "x"}, "f": {"config": "x", "kind": "final"}},
          "queue": [{"recipe": "base", "fold": 0, "seed": 0},
                    {"recipe": "f", "fold": "all", "seed": 0}]}
  table = table_script.lever_table(plan, repo="unused")
  assert list(table["recipes"]) == ["base"] and read == ["base"]
  assert "| f |" not in table_script.markdown(table)


def test_selection_compares_the_kept_epoch_with_the_last_and_refuses_repeated_epochs(tmp_path):
  """A 5-epoch log whose run kept epoch 3: the gain is Dice(3) - Dice(5), by hand; a log with an
  epoch twice (or without the kept epoch) is refused rather than read silently."""
  table_script = load_script("campaign_table")
  log = tmp_path / "log.csv"
  log.write_text("epoch,val_loss,val_mean_layer_dice\n1,0.9,0.50\n2,0.5,0.70\n3,0.4,0.80\n"
                 "4,0.45,0.75\n5,0.41,0.78\n")
  got = table_script.selection(str(log), 3)
  assert got["selected_epoch"] == 3 and got["last_epoch"] == 5
  assert abs(got["selection_gain"] - (0.80 - 0.78)) < 1e-12
  for text, kept in (("epoch,val_mean_layer_dice\n1,0.5\n2,0.6\n2,0.7\n", 2),
                     ("epoch,val_mean_layer_dice\n1,0.5\n2,0.6\n", 7)):
    log.write_text(text)
    with pytest.raises(SystemExit, match="log.csv"):
      table_script.selection(str(log), kept)


def test_a_run_id_parses_back_and_is_named_from_its_workdir():
  run = {"recipe": "plateau_80_fluid_skip_wh_ema", "fold": 3, "seed": 12}
  assert campaign.run_parts(campaign.run_id(run)) == ("plateau_80_fluid_skip_wh_ema", 3, 12)
  assert campaign.run_of_workdir("/w/runs/plateau_80_fluid_skip_wh_ema/fold3_seed12/") == \
      campaign.run_id(run)


def test_a_run_gets_sigint_back_when_the_runner_was_started_ignoring_it(tmp_path):
  """A runner started in the background (`cmd &`) inherits SIGINT ignored; its runs must not,
  or the runner's SIGINT could not stop a training cleanly (KeyboardInterrupt)."""
  import signal
  import sys
  check = ("import signal, sys; "
           "sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 3)")
  before = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    status = campaign.run_logged([sys.executable, "-c", check], str(tmp_path),
                                 str(tmp_path / "log"), nice=0)
  finally:
    signal.signal(signal.SIGINT, before)
  assert status == 0, (tmp_path / "log").read_text()


def test_an_interrupted_runner_says_so_in_one_line(monkeypatch, capsys):
  """kill -INT (KeyboardInterrupt) ends the runner with one line and status 130, not a
  traceback in its log."""
  def interrupted(*args):
    raise KeyboardInterrupt
  monkeypatch.setattr(campaign, "run_campaign", interrupted)
  assert campaign.main([]) == 130
  (line,) = capsys.readouterr().out.splitlines()
  assert line.endswith("campaign: interrupted; the run in flight resumes from its last "
                       "checkpoint when the runner is started again")


def test_a_kept_run_without_a_best_checkpoint_fails_and_says_why(tmp_path, monkeypatch):
  repo, plan_path = _repo(tmp_path, keep_first=True)
  plan = json.loads(open(plan_path).read())
  plan["queue"] = plan["queue"][:1]
  open(plan_path, "w").write(json.dumps(plan))
  state, calls = str(tmp_path / "state"), []
  fake = _fake_run(calls)

  def no_best(cmd, cwd, log_path):
    code = fake(cmd, cwd, log_path)
    shutil.rmtree(f"{state}/runs/base/fold0_seed0/best", ignore_errors=True)
    return code
  monkeypatch.setattr(campaign, "run_logged", no_best)
  campaign.run_campaign(plan_path, state, str(repo))
  assert len(calls) == 4 and "Campaign" not in _git(repo, "log", "--format=%s")   # 2 attempts
  assert open(f"{state}/runs/base/fold0_seed0.out").read().count(
      f"campaign: {state}/runs/base/fold0_seed0/best: no best checkpoint to keep") == 2
