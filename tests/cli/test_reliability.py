"""Outputs never replace inputs, folder runs report bad files, every field and config value is
checked, and every failure is one line with exit status 2 (130 for an interrupt)."""

import csv
import json
import os
import stat

import numpy as np
import pytest
import scipy.io
from PIL import Image

import main
from octseg_jax.config import checks as config_checks
from octseg_jax.outputs import atomic, folder_run
from octseg_jax.data import inputs, synthetic
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_npz, write_png
from conftest import ROOT, file_hashes

IMG = synthetic.generate(3, 64, 48, seed=5)


def _cli(capsys, *args):
  """Runs the command line in-process; returns (status, stderr lines)."""
  capsys.readouterr()
  status = main.run_command(["main.py", *args])
  return status, capsys.readouterr().err.strip().splitlines()


def _predict(capsys, workdir, input_path, output, *extra):
  return _cli(capsys, "--mode=predict", f"--workdir={workdir}", f"--input={input_path}",
              f"--output={output}", *extra)


# ---- outputs never replace inputs or each other ------------------------------------------

def test_output_that_would_replace_the_input_is_refused(trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images)
  before = file_hashes(tmp_path)
  status, err = _predict(capsys, workdir, tmp_path / "scan.npz", tmp_path)
  assert status == 2 and err == [f"error: --output={tmp_path}: holds the input scan.npz; "
                                 "outputs beside the inputs would be read as scans by the next "
                                 "run of that folder; choose another output folder"]
  assert file_hashes(tmp_path) == before                     # nothing written, input unchanged
  linked = tmp_path / "out"                  # an output name that is a link to the input
  linked.mkdir()
  (linked / "scan.npz").symlink_to(tmp_path / "scan.npz")
  status, err = _predict(capsys, workdir, tmp_path / "scan.npz", linked)
  assert status == 2 and err == [f"error: --output={linked}: the output {linked}/scan.npz would "
                                 "replace the input file of that name; choose another output "
                                 "folder"]
  assert file_hashes(tmp_path) == {**before, "out/scan.npz": before["scan.npz"]}   # the link


def test_same_stem_and_same_scan_names_get_distinct_outputs(trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  src = tmp_path / "in"
  write_npz(str(src / "scan.npz"), images=IMG.images[:2])     # scans scan_000, scan_001
  write_png(str(src / "scan.png"), IMG.images[2])             # scan 'scan'
  write_png(str(src / "scan_000.png"), IMG.images[1])         # a scan named like scan.npz's first
  before = file_hashes(src)
  status, err = _predict(capsys, workdir, src, tmp_path / "out", "--figures=all")
  assert status == 0, err
  out = tmp_path / "out"
  with np.load(out / "scan.npz.npz") as a, np.load(out / "scan.png.npz") as b, \
       np.load(out / "scan_000.npz") as c:
    assert a["pred"].shape == (2, 64, 48) and b["pred"].shape == (1, 64, 48)
    assert c["pred"].shape == (1, 64, 48) and a["pred"].dtype == np.uint8
    # The same image gives the same prediction wherever it sits.
    np.testing.assert_array_equal(a["pred"][1], c["pred"][0])
  figures = sorted(f for f in os.listdir(out) if f.endswith("_overlay.png"))
  assert figures == ["scan_000_2_overlay.png", "scan_000_overlay.png", "scan_001_overlay.png",
                     "scan_overlay.png"]
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["complete"] and manifest["files_predicted"] == 3 and manifest["scans"] == 4
  assert manifest["members"] == manifest["views"] == 1             # one model, no flip
  assert sorted(manifest["outputs"]) == sorted(set(os.listdir(out)) - {"manifest.json"})
  assert file_hashes(src) == before
  assert not [f for f in os.listdir(out) if f.endswith(".npz")
              and not f.startswith(("scan.npz", "scan.png", "scan_000"))]   # one .npz per file


def test_a_rerun_replaces_every_output_of_the_earlier_run(trained_workdir, tmp_path, capsys):
  """A rerun into the same --output removes what the earlier run's manifest listed (its figures
  too, though this run draws none) and keeps files that no run wrote; a manifest entry outside
  the folder (an edited manifest) is never followed, and inputs are never removed."""
  workdir, _ = trained_workdir
  out = tmp_path / "out"
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:2])
  assert _predict(capsys, workdir, tmp_path / "scan.npz", out, "--figures=all")[0] == 0
  assert {"scan_000_overlay.png", "scan_001_thickness.png"} <= set(os.listdir(out))
  (out / "notes.txt").write_text("mine")
  manifest = json.loads((out / "manifest.json").read_text())
  first = manifest["outputs"]
  (tmp_path / "elsewhere.txt").write_text("not the run's")
  (out / "manifest.json").write_text(json.dumps(
      {**manifest, "outputs": first + ["../scan.npz", "../elsewhere.txt"]}))
  before = file_hashes(tmp_path)
  status, err = _predict(capsys, workdir, tmp_path / "scan.npz", out, "--figures=none")
  assert status == 0, err
  manifest = json.loads((out / "manifest.json").read_text())
  assert set(os.listdir(out)) == set(manifest["outputs"]) | {"manifest.json", "notes.txt"}
  assert not [f for f in first if f.endswith(".png") and os.path.exists(out / f)]
  after = file_hashes(tmp_path)
  assert after["out/notes.txt"] == before["out/notes.txt"]
  assert after["scan.npz"] == before["scan.npz"]
  assert after["elsewhere.txt"] == before["elsewhere.txt"]


@pytest.mark.parametrize("mode, name", [("predict", "summary.csv"), ("predict", "scan.npz"),
                                        ("eval", "metrics.json"), ("explain", "cam_stats.md"),
                                        ("predict", "manifest.json"), ("eval", "errors.csv"),
                                        ("explain", ".output.claims")])
def test_a_file_that_no_run_wrote_is_never_replaced(trained_workdir, tmp_path, capsys, mode,
                                                    name):
  """An output (or record) name already taken by a file that no earlier run's manifest lists:
  one line naming it, exit 2, the folder unchanged."""
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1], masks=IMG.masks[:1])
  out = tmp_path / "out"
  out.mkdir()
  (out / name).write_text("mine")
  before = file_hashes(out)
  status, err = _cli(capsys, f"--mode={mode}", f"--workdir={workdir}",
                     f"--input={tmp_path / 'scan.npz'}", f"--output={out}")
  assert status == 2 and len(err) == 1, err
  assert err[0].startswith(f"error: --output={out}: {out / name} is not ")
  assert file_hashes(out) == before and os.listdir(out) == [name]


def test_a_figure_name_taken_by_a_users_file_gets_the_next_name(trained_workdir, tmp_path,
                                                                 capsys):
  """Names claimed while the run writes (per-scan figures) skip a file no run wrote; a rerun
  says how many of the earlier run's outputs it replaces."""
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1])
  out = tmp_path / "out"
  out.mkdir()
  (out / "scan_000_overlay.png").write_text("mine")
  assert _predict(capsys, workdir, tmp_path / "scan.npz", out, "--figures=all")[0] == 0
  assert (out / "scan_000_overlay.png").read_text() == "mine"
  listed = json.loads((out / "manifest.json").read_text())["outputs"]
  assert {"scan_000_2_overlay.png", "scan_000_2_thickness.png"} <= set(listed)
  capsys.readouterr()
  assert main.run_command(["main.py", "--mode=predict", f"--workdir={workdir}",
                           f"--input={tmp_path / 'scan.npz'}", f"--output={out}"]) == 0
  assert (f"predict: removing the {len(listed)} outputs of the earlier run in {out} "
          "(its manifest.json lists them; a folder holds one run's outputs: give each run its "
          "own --output to keep them)") in capsys.readouterr().out
  assert (out / "scan_000_overlay.png").read_text() == "mine"


@pytest.mark.parametrize("manifest, removed", [
    ({"mode": "eval", "outputs": ["a.png", "sub/b.csv"]}, ["a.png", "sub/b.csv"]),  # any mode
    ({"mode": "predict", "outputs": ["a.png", 3, None, "../outside.txt", "/abs.txt"]},
     ["a.png"]),
    ({"mode": "predict", "outputs": [".output.lock", ".output.claims", "manifest.json",
                                     "errors.csv", atomic.TEMP_PREFIX + "1-x.npz", "a.png"]},
     ["a.png"]),
    ({"mode": "predict", "outputs": "a.png"}, []),             # not a list: nothing followed
    (["a.png"], []), (None, []), ("not json", []),
])
def test_earlier_outputs_follow_only_files_of_the_folder(tmp_path, manifest, removed):
  """What a run into a folder removes of the earlier run: the manifest's listed files inside
  the folder, never the folder's own records, temporary files, paths outside it, or anything
  from a manifest of the wrong shape."""
  from octseg_jax.outputs.folder_run import RunOutputs
  folder = tmp_path / "out"
  (folder / "sub").mkdir(parents=True)
  text = manifest if manifest == "not json" else json.dumps(manifest)
  (folder / "manifest.json").write_text(text)
  run = RunOutputs(str(folder), [], "predict")
  got = sorted(os.path.relpath(p, folder) for p in run.earlier_outputs())
  assert got == sorted(removed)


def test_a_refused_run_removes_its_outputs_and_records_and_the_folder_it_made(tmp_path):
  """end_unfinished(refused=True), after an InputError or a full disk mid-run: the run's files,
  records and lock go, and the folder when the run made it; a user's file in a folder that
  was there stays, and so does the folder. An interrupted run keeps its records."""
  made, kept = tmp_path / "new", tmp_path / "old"
  kept.mkdir()
  (kept / "notes.txt").write_text("mine")
  for folder in (made, kept):
    run = folder_run.RunOutputs(str(folder), [], "explain")
    run.start()
    (path,) = run.claim("scan_cam", [".npz"])
    open(path, "w").close()
    run.wrote(path)
    folder_run.end_unfinished(refused=True)
  assert not made.exists() and os.listdir(kept) == ["notes.txt"]
  run = folder_run.RunOutputs(str(made), [], "explain")
  run.start()
  earlier = folder_run.unfinished_runs()             # a run that a later command leaves alone
  later = folder_run.RunOutputs(str(tmp_path / "later"), [], "explain")
  later.start()
  folder_run.end_unfinished(refused=True, keep=earlier)
  assert not (tmp_path / "later").exists() and folder_run.unfinished_runs() == earlier
  folder_run.end_unfinished()
  manifest = json.loads((made / folder_run.MANIFEST).read_text())
  assert manifest["complete"] is False and os.listdir(made) == [folder_run.MANIFEST]


def test_claims_after_the_start_are_appended_and_replaced_by_the_next_run(tmp_path, capsys):
  """After the start a claim appends a line to the claims file; the manifest is not rewritten
  (O(N) bytes of records for N files, not O(N^2)). The next run replaces what the interrupted
  run claimed before and after its start (a cut last line is skipped); a finished run lists
  what it wrote and leaves no claims file."""
  folder = tmp_path / "out"
  run = folder_run.RunOutputs(str(folder), [], "predict")
  run.claim("summary", [".csv"])                                   # before the start
  run.start()
  manifest = (folder / folder_run.MANIFEST).read_bytes()
  for i in range(3):
    for path in run.claim(f"s{i}", [".npz", "_overlay.png"]):
      open(path, "w").close()
  later = [f"s{i}{suffix}" for i in range(3) for suffix in (".npz", "_overlay.png")]
  assert (folder / folder_run.MANIFEST).read_bytes() == manifest
  provisional = json.loads(manifest)
  assert not provisional["complete"] and provisional["outputs"] == ["summary.csv"]
  assert provisional["later_claims"] == folder_run.CLAIMS
  lines = (folder / folder_run.CLAIMS).read_text().splitlines()
  assert [json.loads(line) for line in lines] == later
  with open(folder / folder_run.CLAIMS, "a") as f:
    f.write('"s3.n')                                  # the line an interruption cut short
  folder_run.end_unfinished()                          # the interrupted run ends
  rerun = folder_run.RunOutputs(str(folder), [], "predict")
  assert sorted(os.path.relpath(p, folder) for p in rerun.earlier_outputs()) == sorted(
      ["summary.csv"] + later)
  capsys.readouterr()
  rerun.start()
  assert "removing the 6 outputs of the earlier run" in capsys.readouterr().out
  assert sorted(os.listdir(folder)) == [folder_run.OUTPUT_LOCK, folder_run.MANIFEST]
  (path,) = rerun.claim("s0", [".npz"])
  open(path, "w").close()
  rerun.wrote(path)
  rerun.finish()
  assert sorted(os.listdir(folder)) == [folder_run.MANIFEST, "s0.npz"]
  done = json.loads((folder / folder_run.MANIFEST).read_text())
  assert done["complete"] and done["outputs"] == ["s0.npz"] and "later_claims" not in done


def test_default_outputs_of_every_mode_are_new_folders_under_runs(trained_workdir, tmp_path,
                                                                  capsys, monkeypatch):
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1], masks=IMG.masks[:1])
  before = file_hashes(workdir)
  monkeypatch.chdir(tmp_path)
  status, err = _cli(capsys, "--mode=eval", f"--workdir={workdir}", "--input=scan.npz")
  assert status == 0, err
  status, err = _cli(capsys, "--mode=eval", f"--workdir={workdir}", "--input=scan.npz")
  assert status == 0, err
  name = f"eval_{os.path.basename(workdir)}"
  assert (tmp_path / "runs" / name / "metrics.json").exists()
  assert (tmp_path / "runs" / f"{name}_2" / "metrics.json").exists()   # a new folder each time
  status, err = _cli(capsys, "--mode=explain", f"--workdir={workdir}", "--input=scan.npz")
  assert status == 0, err
  assert (tmp_path / "runs" / f"explain_{os.path.basename(workdir)}" / "cam_stats.json").exists()
  status, err = _cli(capsys, "--mode=predict", f"--workdir={workdir}", "--input=scan.npz")
  assert status == 0, err                                            # the same rule
  assert (tmp_path / "runs" / f"predict_{os.path.basename(workdir)}" / "scan.npz").exists()
  assert file_hashes(workdir) == before                               # the workdir is untouched
  status, err = _cli(capsys, "--mode=eval", f"--workdir={workdir}", f"--output={workdir}")
  assert status == 2 and err == [f"error: --output={workdir}: is the workdir; write results "
                                 "to another folder"]


@pytest.mark.parametrize("output, message", [
    ("f.txt", "is a file, expected a folder"),
    ("f.txt/sub", "is a file, so the folder cannot be made"),
])
def test_bad_output_paths(trained_workdir, tmp_path, capsys, output, message):
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "in" / "scan.npz"), images=IMG.images[:1])
  (tmp_path / "f.txt").write_text("x")
  output = tmp_path / output
  status, err = _predict(capsys, workdir, tmp_path / "in" / "scan.npz", output)
  assert status == 2 and len(err) == 1 and message in err[0] and err[0].startswith("error: --output=")
  assert (tmp_path / "f.txt").read_text() == "x"


def test_disk_full_is_one_line_and_leaves_no_partial_file(trained_workdir, tmp_path, capsys,
                                                          monkeypatch):
  """A full disk mid-run: one line, status 2, and the run's files and records removed (the
  folder too, where the run made it; a user's file in a folder that was there stays:
  test_a_refused_run_removes_its_outputs_and_records_and_the_folder_it_made)."""
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1])

  append = atomic.StreamingNpz.append

  def full(self, name, batch):
    append(self, name, batch)                       # some bytes reach the disk, then it is full
    raise OSError(28, "No space left on device", self.parts[name])
  monkeypatch.setattr(atomic.StreamingNpz, "append", full)
  status, err = _predict(capsys, workdir, tmp_path / "scan.npz", tmp_path / "out")
  assert status == 2 and len(err) == 1
  assert err[0].startswith("error: ") and err[0].endswith(": No space left on device")
  assert not (tmp_path / "out").exists()           # the run made the folder: none of it stays


def test_interrupt_is_exit_130_without_traceback(capsys, monkeypatch):
  from octseg_jax.modes import cli
  def interrupted(flags, override_args=()):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli, "dispatch", interrupted)
  status, err = _cli(capsys, "--mode=eval", "--workdir=w")
  assert status == 130 and err == ["error: interrupted"]


# ---- folder runs ---------------------------------------------------------------------------

def test_folder_run_lists_failures_and_skips_then_exits_2(trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  src = tmp_path / "in"
  write_npz(str(src / "good.npz"), images=IMG.images[:2])
  (src / "broken.npz").write_bytes(b"PK\x03\x04 not really")
  (src / "README.md").write_text("notes")
  (src / "settings.json").write_text("{}")
  out = tmp_path / "out"
  out.mkdir()
  (out / ".octseg-good.abc123.tmp.npz").write_bytes(b"left over by a killed run")
  (out / "manifest.json").write_text('{"mode": "eval", "outputs": [], "stale": true}')
  before = file_hashes(src)
  status, err = _predict(capsys, workdir, src, out)
  assert status == 2
  assert err[-1] == (f"error: {src}: 1 of 2 scan files could not be read or predicted (listed in "
                     f"{out}/errors.csv)")
  with open(out / "errors.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["file", "status", "reason"]
  assert [r[:2] for r in rows[1:]] == [[str(src / "README.md"), "skipped"],
                                       [str(src / "settings.json"), "skipped"],
                                       [str(src / "broken.npz"), "failed"]]
  assert rows[3][2].startswith(f"{src}/broken.npz: not a readable .npz file")
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["failed"] == 1 and manifest["skipped"] == 2 and manifest["scans"] == 2
  assert sorted(os.listdir(out)) == ["errors.csv", "good.npz", "good_000_overlay.png",
                                     "good_000_thickness.png", "good_thickness.csv",
                                     "manifest.json", "summary.csv"]  # the leftover is gone
  assert file_hashes(src) == before


# ---- config values, checked before anything is written -------------------------------------

@pytest.mark.parametrize("mode, flag, users", [
    ("train", "--input=scan.npz", "--mode=predict and --mode=explain and --mode=eval"),
    ("train", "--output=out", "--mode=predict and --mode=explain and --mode=eval and "
                              "--mode=benchmark"),
    ("train", "--cam_layers=head", "--mode=explain"),
    ("eval", "--cam_sanity", "--mode=explain"),
    ("predict", "--cam_faithfulness=road", "--mode=explain")])
def test_a_mode_refuses_the_flags_of_other_modes(trained_workdir, tmp_path, capsys, mode, flag,
                                                 users):
  config = ["--config=configs/tiny.py"] if mode == "train" else ["--input=x.npz"]
  workdir = tmp_path / "w" if mode == "train" else trained_workdir[0]
  status, err = _cli(capsys, f"--mode={mode}", f"--workdir={workdir}", *config, flag)
  assert status == 2 and err == [f"error: {flag.split('=')[0]}: only used by {users}"]
  assert not (tmp_path / "w").exists()


def test_absl_s_error_is_reworded_when_it_is_not_about_a_config_value(tmp_path, capsys):
  status, err = _cli(capsys, "--mode=trian", "--config=configs/tiny.py",
                     "--config.train.num_epochs=abc", f"--workdir={tmp_path / 'w'}")
  assert status == 2 and err == ["error: --mode=trian: valid values are "
                                 "train, eval, predict, explain, benchmark"]


@pytest.mark.parametrize("flag, message", [
    ("--inptu=scan.npz", "--inptu: no such option; did you mean --input?"),
    ("--zzzzzz", "--zzzzzz: no such option"),
    ("--figures=some", "--figures=some: valid values are none, first, fovea, all"),
    ("--num_processes=x", "--num_processes=x: expected a whole number"),
    ("--volume=maybe", "--volume=maybe: expected true or false"),
    ("--cam_layers", "--cam_layers: missing value"),
    ("-cam_layers", "-cam_layers: missing value"),
    ("--num_processes=a: b", "--num_processes=a: b: expected a whole number"),
    ("--novolume=true", "--novolume=true: takes no value"),
    ("--laterality=", "--laterality=: valid values are OD, OS")])
def test_a_bad_flag_is_one_line_naming_it_in_our_words(tmp_path, capsys, flag, message):
  """absl's own flag errors (an unknown flag, a value its parser refuses) take the form of every
  other bad option, `--NAME[=VALUE]: problem`, before anything is written."""
  status, err = _cli(capsys, "--mode=train", "--config=configs/tiny.py",
                     f"--workdir={tmp_path / 'w'}", flag)
  assert status == 2 and err == [f"error: {message}"]
  assert not (tmp_path / "w").exists()


def test_a_flag_file_that_cannot_be_read_is_one_line(tmp_path):
  """ml_collections reads --flagfile while main.py defines --config, so main.py checks it first."""
  (tmp_path / "flags.txt").write_text("--mode=eval\n")
  check = main._unreadable_flagfile
  assert check(["main.py", f"--flagfile={tmp_path / 'flags.txt'}"]) is None
  assert check(["main.py", "--flagfile", str(tmp_path / "flags.txt")]) is None
  assert check(["main.py", f"--flagfile={tmp_path / 'no.txt'}"]) == (
      f"--flagfile={tmp_path / 'no.txt'}: cannot be read (No such file or directory)")
  assert check(["main.py", f"--flagfile={tmp_path}"]) == (
      f"--flagfile={tmp_path}: cannot be read (Is a directory)")
  assert check(["main.py", "--mode=eval", "--flagfile"]) == "--flagfile: missing value"
  assert check(["main.py", "--flagfiles=x", "--mode=eval"]) is None


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=0", "--config.train.batch_size=0: expected an integer >= 1"),
    ("train.num_epochs=-1", "--config.train.num_epochs=-1: expected an integer >= 1"),
    ("data.source=ducks", "--config.data.source='ducks': valid values are synthetic, duke, folder"),
    ("train.compute_dtype=float16", "valid values are float32, bfloat16"),
    ("model.widths=()", "--config.model.widths=(): expected 1 to 12 integers >= 1"),
    ("train.learning_rate=nan", "--config.train.learning_rate=nan: expected a number in (0, 1000]"),
    ("data.fold=4", "--config.data.fold=4: must be below data.num_folds=4"),
    ("data.max_image_side=0", "--config.data.max_image_side=0: expected an integer >= 8"),
    ("explain.method=cam", "--config.explain.method='cam': valid values are gradcam"),
    ("train.num_epochs=abc", "--config.train.num_epochs=abc: expected a whole number"),
    ("model.fluid_head=yes", "--config.model.fluid_head=yes: expected true or false"),
])
def test_invalid_config_values_fail_before_the_workdir_exists(tmp_path, capsys, override,
                                                              message):
  workdir = tmp_path / "w"
  status, err = _cli(capsys, "--config=configs/tiny.py", f"--config.{override}",
                     f"--workdir={workdir}")
  assert status == 2 and len(err) == 1 and message in err[0], err
  assert not workdir.exists()


def test_a_data_folder_that_is_a_file_or_missing_is_named(tmp_path, capsys):
  scan = tmp_path / "subject_01.npz"
  scan.write_bytes(b"")
  for path, problem in ((scan, "is a file, expected a folder"),
                        (tmp_path / "no", "no such folder")):
    for source in ("duke", "folder"):
      status, err = _cli(capsys, "--config=configs/tiny.py", f"--config.data.source={source}",
                         f"--config.data.{source}_dir={path}", f"--workdir={tmp_path / 'w'}")
      assert status == 2 and err == [f"error: --config.data.{source}_dir='{path}': {problem}"]
  assert not (tmp_path / "w").exists()


def test_config_file_problems(tmp_path, capsys):
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  for path, message in ((tmp_path / "none.py", "no such file"),
                        (tmp_path, "is a folder; give a config file such as configs/tiny.py"),
                        (broken, "not a readable Python config file (SyntaxError")):
    status, err = _cli(capsys, f"--config={path}", f"--workdir={tmp_path}/w")
    assert status == 2 and len(err) == 1 and err[0].startswith(f"error: --config={path}: {message}")
  assert not (tmp_path / "w").exists()
  note = tmp_path / "notes.txt"
  note.write_text("a file, not a workdir")
  for workdir, message in ((note, "is a file, not a workdir (a folder)"),
                           (tmp_path / "gone", "no such workdir")):
    status, err = _cli(capsys, "--mode=predict", f"--workdir={workdir}", "--input=x.npz")
    assert status == 2 and err == [f"error: --workdir={workdir}: {message}"]


def test_every_shipped_config_is_valid():
  import glob
  import importlib
  paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
  names = [os.path.basename(p)[:-3] for p in paths]
  modules = [importlib.import_module(f"configs.{n}") for n in names if n != "__init__"]
  assert len([m for m in modules if hasattr(m, "get_config")]) >= 7
  for module in modules:
    if hasattr(module, "get_config"):
      config_checks.validate(module.get_config(), check_files=False)


# ---- workdir JSON ---------------------------------------------------------------------------

def _copy_workdir(workdir, dest):
  import shutil
  shutil.copytree(workdir, dest)
  return str(dest)


def test_workdir_config_missing_fields_take_defaults(trained_workdir, tmp_path, capsys):
  copy = _copy_workdir(trained_workdir[0], tmp_path / "w")
  path = os.path.join(copy, "config.json")
  stored = json.loads(open(path).read())
  del stored["explain"], stored["data"]["pixel_um"], stored["data"]["max_image_side"]
  open(path, "w").write(json.dumps(stored))
  from octseg_jax.serving import workdir as workdir_lib
  config = workdir_lib.load_config(copy)
  assert config.data.pixel_um == 3.87 and config.explain.method == "hirescam"
  assert tuple(config.model.widths) == (4, 8)                # stored values are kept
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1])
  status, err = _predict(capsys, copy, tmp_path / "scan.npz", tmp_path / "out")
  assert status == 0, err


def test_eval_of_a_workdir_whose_data_moved(trained_workdir, tmp_path, capsys):
  """A workdir trained on a folder of PNGs that has since moved: eval names the missing folder
  in one line and takes the new place from --config.data.folder_dir (where the data lives is
  not part of the model), scoring the same validation scans as before."""
  copy = _copy_workdir(trained_workdir[0], tmp_path / "w")
  split = json.load(open(os.path.join(copy, "split.json")))
  phantom = synthetic.generate(12, 96, 64, seed=0, scans_per_subject=4)   # configs/tiny.py
  data = tmp_path / "moved_here"
  for name in split["val"]["names"]:
    i = phantom.names.index(name)
    write_png(str(data / "images" / f"{name}.png"), phantom.images[i])
    write_png(str(data / "masks" / f"{name}.png"), phantom.masks[i])
  path = os.path.join(copy, "config.json")
  stored = json.load(open(path))
  stored["data"].update(source="folder", folder_dir=str(tmp_path / "was_here"))
  open(path, "w").write(json.dumps(stored))
  status, err = _cli(capsys, "--mode=eval", f"--workdir={copy}", f"--output={tmp_path / 'e1'}")
  assert status == 2 and len(err) == 1 and str(tmp_path / "was_here") in err[0]
  status, err = _cli(capsys, "--mode=eval", f"--workdir={copy}", f"--output={tmp_path / 'e2'}",
                     f"--config.data.folder_dir={data}")
  assert status == 0, err
  assert _cli(capsys, "--mode=eval", f"--workdir={trained_workdir[0]}",
              f"--output={tmp_path / 'e3'}")[0] == 0
  moved, original = (json.load(open(tmp_path / e / "metrics.json")) for e in ("e2", "e3"))
  assert moved["scans"] == original["scans"] == len(split["val"]["names"])
  assert moved["data"].endswith(f" read from {data}")          # what was scored, recorded
  assert "read from" not in original["data"]                   # the phantom has no folder
  # Other pixels under the same names are refused in one line (split.json's val.sha256).
  first = split["val"]["names"][0]
  image = phantom.images[phantom.names.index(first)].copy()
  image[0, 0] ^= 1
  write_png(str(data / "images" / f"{first}.png"), image)
  status, err = _cli(capsys, "--mode=eval", f"--workdir={copy}", f"--output={tmp_path / 'e4'}",
                     f"--config.data.folder_dir={data}")
  assert status == 2 and len(err) == 1 and "have the names, not the pixels" in err[0]
  # A workdir written before the digest existed is scored as before.
  split["val"].pop("sha256")
  open(os.path.join(copy, "split.json"), "w").write(json.dumps(split))
  assert _cli(capsys, "--mode=eval", f"--workdir={copy}", f"--output={tmp_path / 'e5'}",
              f"--config.data.folder_dir={data}")[0] == 0
  assert moved["topology"]["literature"] == original["topology"]["literature"]


def _keep_only(stored: dict, reference: dict, prefix: str = "") -> list:
  """Deletes from `stored` (in place) every field `reference` lacks; returns their names."""
  gone = []
  for key in list(stored):
    if key not in reference:
      gone.append(prefix + key)
      del stored[key]
    elif isinstance(stored[key], dict) and isinstance(reference[key], dict):
      gone += _keep_only(stored[key], reference[key], f"{prefix}{key}.")
  return gone


def test_a_workdir_from_before_the_campaign_restores_and_predicts_the_same(trained_workdir,
                                                                           tmp_path):
  """The tiny workdir with its config.json cut to the fields of the first shipped model's
  (written before the kernel option, the fluid and boundary heads, the loss choice and the
  predict section existed): the missing fields take the values v1 models were trained with,
  and its checkpoint restores into the same model with the same probabilities, bit for bit."""
  from octseg_jax.serving import inference
  copy = _copy_workdir(trained_workdir[0], tmp_path / "old")
  path = os.path.join(copy, "config.json")
  v1 = json.load(open(os.path.join(ROOT, "docs/results/gpu_h200/pretrained_v1/config.json")))
  stored = json.load(open(path))
  gone = _keep_only(stored, v1)
  assert {"model.kernel", "model.fluid_head", "model.boundary_head", "loss.name",
          "predict"} <= set(gone)
  open(path, "w").write(json.dumps(stored))
  old, new = inference.load_trained(copy), inference.load_trained(trained_workdir[0])
  model, loss = old.config.model, old.config.loss
  assert tuple(model.kernel) == (3, 3) and not model.boundary_head and not model.fluid_head
  assert loss.name == "hybrid" and old.config.predict.members == 0
  x = IMG.images[:2].astype(np.float32) / 255.0
  np.testing.assert_array_equal(old.probs(x), new.probs(x))


@pytest.mark.parametrize("edit, message", [
    (lambda c, s: s.pop("input_shape"), "split.json: field 'input_shape' is missing"),
    (lambda c, s: s.update(input_shape="big"), "split.json: field 'input_shape'='big'"),
    (lambda c, s: s["train"].update(fingerprints=7),
     "split.json: field 'train.fingerprints' is not a list of strings"),
    (lambda c, s: c["train"].update(compute_dtype="int4"),
     "config.json: field train.compute_dtype='int4': valid values are float32, bfloat16"),
    (lambda c, s: c.update(model=[1, 2]), "config.json: field 'model' should be an object"),
])
def test_workdir_json_with_bad_fields(trained_workdir, tmp_path, capsys, edit, message):
  copy = _copy_workdir(trained_workdir[0], tmp_path / "w")
  config = json.loads(open(os.path.join(copy, "config.json")).read())
  split = json.loads(open(os.path.join(copy, "split.json")).read())
  edit(config, split)
  open(os.path.join(copy, "config.json"), "w").write(json.dumps(config))
  open(os.path.join(copy, "split.json"), "w").write(json.dumps(split))
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1])
  status, err = _predict(capsys, copy, tmp_path / "scan.npz", tmp_path / "out")
  assert status == 2 and len(err) == 1 and message in err[0], err
  assert not (tmp_path / "out").exists()


def test_eval_without_a_labelled_pixel(trained_workdir, tmp_path, capsys):
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1],
            masks=np.full((1, 64, 48), 255, np.uint8))
  status, err = _cli(capsys, "--mode=eval", f"--workdir={trained_workdir[0]}",
                     f"--input={tmp_path}/scan.npz", f"--output={tmp_path}/out")
  assert status == 2 and err == [f"error: {tmp_path}/scan.npz: no labelled pixel in any mask "
                                 "(every pixel is 255 = ignore), so there is nothing to score"]
  assert not (tmp_path / "out").exists()


def test_eval_of_a_folder_follows_the_folder_run_protocol(trained_workdir, tmp_path, capsys):
  """Readable files with masks are scored; a damaged file and one without masks are listed in
  errors.csv, a README is skipped, manifest.json lists the outputs, and the status is 2."""
  folder = tmp_path / "in"
  write_npz(str(folder / "good.npz"), images=IMG.images[:2], masks=IMG.masks[:2])
  write_npz(str(folder / "no_masks.npz"), images=IMG.images[:1])
  (folder / "broken.npz").write_bytes(b"not a zip")
  (folder / "README.txt").write_text("notes")
  status, err = _cli(capsys, "--mode=eval", f"--workdir={trained_workdir[0]}",
                     f"--input={folder}", f"--output={tmp_path}/out")
  assert status == 2 and len(err) == 1 and "2 of 3 scan files could not be read" in err[0], err
  rows = list(csv.DictReader(open(tmp_path / "out" / "errors.csv")))
  assert sorted((os.path.basename(r["file"]), r["status"]) for r in rows) == [
      ("README.txt", "skipped"), ("broken.npz", "failed"), ("no_masks.npz", "failed")]
  manifest = json.load(open(tmp_path / "out" / "manifest.json"))
  assert manifest["mode"] == "eval" and manifest["scans"] == 2 and manifest["failed"] == 2
  assert sorted(manifest["outputs"]) == ["errors.csv", "eval_provenance.json", "metrics.json",
                                         "metrics.md", "side_by_side.png"]
  metrics = json.load(open(tmp_path / "out" / "metrics.json"))
  assert metrics["scans"] == 2 and metrics["data"] == str(folder)
  assert metrics["raw"]["pixels"] == int((IMG.masks[:2] != 255).sum())      # good.npz alone


# ---- fields of input files -----------------------------------------------------------------

def _npz(tmp_path, **arrays):
  path = str(tmp_path / "scan.npz")
  np.savez(path, **arrays)
  return path


@pytest.mark.parametrize("fields, message", [
    (dict(subject=np.array(["a", "b", "c"])), "field 'subject' has dtype <U1, expected integers"),
    (dict(bscan_index=np.array([0.0, np.nan, 2.0])), "field 'bscan_index' holds NaN"),
    (dict(bscan_index=np.arange(2)), "field 'bscan_index' has shape (2,), expected (3,)"),
    (dict(subject=np.array([1.5, 1, 1])), "field 'subject' holds NaN, infinite or non-integer"),
    (dict(masks=np.full((3, 64, 48), 0.5)), "masks contain non-integer values"),
])
def test_npz_fields_with_wrong_content(tmp_path, fields, message):
  path = _npz(tmp_path, images=IMG.images, **fields)
  with pytest.raises(InputError) as e:
    inputs.load_file(path)
  assert str(e.value).startswith(path) and message in str(e.value)


def test_npy_renamed_npz(tmp_path):
  path = tmp_path / "scan.npz"
  with open(path, "wb") as f:
    np.save(f, IMG.images)
  with pytest.raises(InputError, match="scan.npz: is a single .npy array, not an .npz archive"):
    inputs.load_file(str(path))


def _mat(tmp_path, **fields):
  path = str(tmp_path / "Subject_04.mat")
  scipy.io.savemat(path, fields)
  return path


def _layers(width, scans, annotated):
  """Boundaries [8, W, S]: rows 8, 14, ..., 50 in the annotated scans, NaN elsewhere."""
  layers = np.full((8, width, scans), np.nan)
  layers[:, :, annotated] = np.arange(8, 56, 6, dtype=float)[:, None, None]
  return layers


def test_mat_prediction_reads_every_bscan_and_training_the_annotated(tmp_path):
  vol = np.moveaxis(synthetic.generate(5, 64, 48, seed=2).images, 0, -1)     # [H, W, S]
  path = _mat(tmp_path, images=vol, manualLayers1=_layers(48, 5, [1, 3]))
  every = inputs.load_file(path)
  assert every.images.shape == (5, 64, 48) and every.names[4] == "Subject_04_b04"
  assert (every.masks[0] == 255).all() and (every.masks[1] != 255).all()
  np.testing.assert_array_equal(every.images, np.moveaxis(vol, -1, 0))
  annotated = inputs.load_file(path, require_masks=True)
  assert annotated.names == ["Subject_04_b01", "Subject_04_b03"]
  assert (annotated.masks[0, 8:14] == 1).all() and (annotated.masks[0, :8] == 0).all()
  plain = inputs.load_file(_mat(tmp_path, images=vol))                       # no annotations
  assert plain.images.shape == (5, 64, 48) and plain.masks is None


@pytest.mark.parametrize("fields, message", [
    (lambda v, l: dict(images=v, manualLayers1=np.array(["ab", "cd"])), "field 'manualLayers1' has MATLAB type"),
    (lambda v, l: dict(images=v, manualLayers1=l[1:]), "do not match [H, W, S] and [8, W, S]"),
    (lambda v, l: dict(images=v, manualLayers1=np.where(np.arange(8)[:, None, None] == 0, np.nan, l)),
     "annotates no B-scan (the top boundary, ILM, or the bottom one, BM, is missing"),
    (lambda v, l: dict(images=np.array(["x"]), manualLayers1=l), "field 'images' has MATLAB type"),
    (lambda v, l: dict(images=v, manualLayers1=l, manualFluid1=np.ones((3, 3))), "manualFluid1 has shape"),
])
def test_mat_fields_with_wrong_content(tmp_path, fields, message):
  vol = np.moveaxis(synthetic.generate(2, 64, 48, seed=2).images, 0, -1)
  path = _mat(tmp_path, **fields(vol, _layers(48, 2, [0, 1])))
  with pytest.raises(InputError) as e:
    inputs.load_file(path, require_masks=True)
  assert str(e.value).startswith(path) and message in str(e.value), str(e.value)


def test_mat_with_cell_array_images(tmp_path):
  cells = np.empty((1, 2), dtype=object)
  cells[0, 0], cells[0, 1] = np.zeros((4, 4)), "text"
  path = _mat(tmp_path, images=cells)
  with pytest.raises(InputError, match="field 'images' has MATLAB type object"):
    inputs.load_file(path)


# ---- images: every PIL mode by its meaning ---------------------------------------------------

def test_image_modes_are_converted_by_meaning(tmp_path):
  grey = IMG.images[0]                                        # uint8 [64, 48]
  floats = grey.astype(np.float32) / 255.0
  Image.fromarray(floats, mode="F").save(tmp_path / "f01.tif")
  Image.fromarray(floats * 1000.0, mode="F").save(tmp_path / "f1000.tif")
  Image.fromarray((grey.astype(np.uint16) * 257)).save(tmp_path / "u16.png")
  Image.fromarray(grey).convert("P").save(tmp_path / "pal.png")
  Image.fromarray(grey).convert("LA").save(tmp_path / "la.png")
  read = lambda name: inputs.load_file(str(tmp_path / name)).images[0]
  np.testing.assert_array_equal(read("f01.tif"), grey)      # 0..1 floats: x 255, not 0/1
  np.testing.assert_array_equal(read("u16.png"), grey)      # 16 bit: / 257
  np.testing.assert_array_equal(read("la.png"), grey)
  np.testing.assert_array_equal(read("pal.png"), grey)      # palette via RGB (grey palette)
  stretched = read("f1000.tif")                             # other ranges: min..max to 0..255
  expect = np.round((floats - floats.min()) * (255.0 / (floats.max() - floats.min())))
  np.testing.assert_array_equal(stretched, expect.astype(np.uint8))


def test_multipage_tiff_is_one_file_of_several_scans(tmp_path):
  pages = [Image.fromarray(im) for im in IMG.images]
  pages[0].save(tmp_path / "vol.tif", save_all=True, append_images=pages[1:])
  s = inputs.load_file(str(tmp_path / "vol.tif"))
  np.testing.assert_array_equal(s.images, IMG.images)
  assert s.names == ["vol_p000", "vol_p001", "vol_p002"]


def test_exif_orientation_is_applied(tmp_path):
  im = Image.fromarray(IMG.images[0])
  exif = Image.Exif()
  exif[0x0112] = 6                                            # rotate 90 degrees clockwise
  im.save(tmp_path / "rot.jpg", exif=exif, quality=100, subsampling=0)
  s = inputs.load_file(str(tmp_path / "rot.jpg"))
  assert s.images.shape == (1, 48, 64)
  diff = np.abs(s.images[0].astype(int) - np.rot90(IMG.images[0], -1).astype(int))
  assert diff.mean() < 3                                     # JPEG: close, not exact


def test_images_beyond_max_side_are_refused_before_decoding(tmp_path):
  Image.new("L", (5000, 10)).save(tmp_path / "wide.png")
  with pytest.raises(InputError, match=r"wide.png: image of 10x5000 pixels exceeds "
                                       r"data.max_image_side=4096"):
    inputs.load_file(str(tmp_path / "wide.png"))
  write_png(str(tmp_path / "ok.png"), IMG.images[0])
  with pytest.raises(InputError, match="image of 64x48 pixels exceeds data.max_image_side=32"):
    inputs.load_file(str(tmp_path / "ok.png"), max_side=32)
  with pytest.raises(InputError, match="exceeds data.max_image_side=32"):
    inputs.load_file(_npz(tmp_path, images=IMG.images), max_side=32)


def test_output_files_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    atomic.write_text(str(tmp_path / "a.txt"), "x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
    os.umask(0o077)
    atomic.write_text(str(tmp_path / "b.txt"), "x")
    assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o600
  finally:
    os.umask(old)


def test_interrupts_are_not_raised_where_python_would_ignore_them():
  import sys as _sys
  from octseg_jax.modes import cli
  def _xla_gc_callback():          # named like jax's garbage-collector callback
    return _sys._getframe()

  class Finalised:
    def __del__(self):
      Finalised.frame = _sys._getframe()

  Finalised()
  assert cli._in_gc_callback(_xla_gc_callback())
  assert cli._in_gc_callback(Finalised.frame)
  assert not cli._in_gc_callback(_sys._getframe())


@pytest.mark.parametrize("mode", ["predict", "eval", "explain"])
def test_a_rerun_after_an_interrupted_run_replaces_its_outputs(trained_workdir, tmp_path, capsys,
                                                               monkeypatch, mode):
  """An interruption before the complete manifest leaves the provisional one and the claims
  file, which list every name the run claimed: the rerun replaces those outputs (no refusal,
  no _2 names)."""
  workdir, _ = trained_workdir
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1], masks=IMG.masks[:1])
  out = tmp_path / "out"
  args = ["main.py", f"--mode={mode}", f"--workdir={workdir}",
          f"--input={tmp_path / 'scan.npz'}", f"--output={out}"]

  def interrupted(self, summary=None):
    raise KeyboardInterrupt
  with monkeypatch.context() as m:
    m.setattr(folder_run.RunOutputs, "finish", interrupted)
    assert main.run_command(args) == 130
  provisional = json.loads((out / "manifest.json").read_text())
  records = ("manifest.json", folder_run.OUTPUT_LOCK, folder_run.CLAIMS)
  left = sorted(f for f in os.listdir(out) if f not in records)
  claimed = folder_run.RunOutputs(str(out), [], mode).earlier_outputs()
  assert not provisional["complete"] and left and set(left) <= {
      os.path.relpath(p, out) for p in claimed}
  capsys.readouterr()
  assert main.run_command(args) == 0
  assert f"{mode}: removing the {len(left)} outputs of the earlier run" in capsys.readouterr().out
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["complete"] and sorted(os.listdir(out)) == sorted(
      manifest["outputs"] + ["manifest.json"])
  assert not [f for f in manifest["outputs"] if "_2" in f]


def test_a_busy_folder_is_refused_as_busy_before_its_files_are_judged(trained_workdir, tmp_path,
                                                                      capsys):
  from octseg_jax.outputs.lock import FolderLock
  write_npz(str(tmp_path / "scan.npz"), images=IMG.images[:1])
  out = tmp_path / "out"
  out.mkdir()
  (out / "scan.npz").write_bytes(b"being written by the live run")
  with open(out / folder_run.OUTPUT_LOCK, "w") as f:
    f.write(f"{os.getppid()} {__import__('socket').gethostname()}\n")     # a live owner
  status, err = _predict(capsys, trained_workdir[0], tmp_path / "scan.npz", out)
  assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {out}: busy, process ")
  assert FolderLock(str(out), folder_run.OUTPUT_LOCK)._owner()[0] == os.getppid()
