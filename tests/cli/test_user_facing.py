"""What a new user meets: TensorBoard read back over HTTP, inference-mode overrides, bounded
progress output, and figures that label themselves."""

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from octseg_jax.config import overrides as ovr
from octseg_jax.outputs import plots
from octseg_jax.data import synthetic
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_npz
from conftest import ROOT, tiny_config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
  with urllib.request.urlopen(url, timeout=timeout) as r:
    return r.read()


def _poll_json(url: str, ready, deadline: float):
  """GET url until ready(json) or the deadline (TensorBoard loads event files lazily)."""
  last = None
  while time.monotonic() < deadline:
    try:
      last = json.loads(_get(url))
      if ready(last):
        return last
    except OSError:
      pass
    time.sleep(0.5)
  raise AssertionError(f"{url}: not ready before the deadline (last answer: {last})")


def test_tensorboard_serves_the_logged_scalars_and_images(trained_workdir):
  """Starts the `tensorboard` command on a free localhost port against the tiny workdir and
  reads its scalar tags and one image through the HTTP data API."""
  exe = shutil.which("tensorboard") or os.path.join(os.path.dirname(sys.executable),
                                                     "tensorboard")
  if not os.path.exists(exe):
    pytest.skip("tensorboard is not installed (pip install -r requirements.txt)")
  workdir, _ = trained_workdir
  with open(os.path.join(workdir, "log.csv")) as f:
    csv_keys = set(next(csv.reader(f))) - {"epoch"}
  port = _free_port()
  proc = subprocess.Popen([exe, "--logdir", os.path.join(workdir, "tensorboard"), "--host",
                           "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  base = f"http://127.0.0.1:{port}/data/plugin"
  try:
    deadline = time.monotonic() + 60
    scalars = _poll_json(f"{base}/scalars/tags", lambda j: csv_keys <= set(j.get(".", {})),
                         deadline)
    assert csv_keys <= set(scalars["."])          # one scalar per CSV column, same names
    images = _poll_json(f"{base}/images/tags", lambda j: bool(j.get(".")), deadline)
    tag = sorted(images["."])[0]
    entries = json.loads(_get(f"{base}/images/images?run=.&tag={urllib.parse.quote(tag)}"))
    assert entries and entries[0]["step"] >= 1
    png = _get(f"{base}/images/individualImage?{entries[-1]['query']}")
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
  from PIL import Image
  image = np.asarray(Image.open(io.BytesIO(png)))
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and image.ndim == 3 and image.shape[-1] in (3, 4)
  assert image.std() > 0


# --- inference overrides -----------------------------------------------------------------


def test_overrides_accepted_are_typed():
  got = ovr.parse(["--config.explain.max_scans=1", "--config.explain.layers=head,dec0_conv1",
                   "--config.explain.method=hirescam", "--config.explain.box=(1, 2, 30, 40)",
                   "--config.train.eval_batch_size=3",
                   "--config.explain.deletion_steps=2"], "explain")
  assert got == {"explain.max_scans": 1, "explain.layers": ("head", "dec0_conv1"),
                 "explain.method": "hirescam", "explain.box": (1, 2, 30, 40),
                 "train.eval_batch_size": 3, "explain.deletion_steps": 2}


@pytest.mark.parametrize("arg, message", [
    ("--config.model.widths=(8,16)", "set when the model was trained"),
    ("--config.data.recipe.band_height=64", "set when the model was trained"),
    ("--config.explain.max_scan=1", "no such field; did you mean --config.explain.max_scans?"),
    ("--config.explain.max_scans=0", "expected an integer >= 1"),
    ("--config.explain.max_scans=two", "expected a whole number"),
    ("--config.explain.method=cam", "valid values are gradcam, hirescam, gradcampp"),
    ("--config.explain.box=1,2,3", "expected () or (row0, col0, row1, col1)"),
])
def test_overrides_refused_with_one_line(arg, message):
  with pytest.raises(InputError) as e:
    ovr.parse([arg], "predict")
  text = str(e.value)
  assert message in text and "\n" not in text and text.startswith(arg.split("=")[0])


def test_explains_scan_positions_are_whole_numbers_from_0_and_explain_s_alone():
  assert ovr.parse(["--config.explain.scan_indices=5"], "explain") == {
      "explain.scan_indices": (5,)}
  assert ovr.parse(["--config.explain.scan_indices=2,0"], "explain") == {
      "explain.scan_indices": (2, 0)}
  for arg, mode, message in [
      ("--config.explain.scan_indices=-1", "explain", "--config.explain.scan_indices=-1: "
       "expected positions from 0, such as 5 or 2,5"),
      ("--config.explain.scan_indices=5", "predict", "--config.explain.scan_indices: only "
       "--mode=explain accepts it, not --mode=predict")]:
    with pytest.raises(InputError) as e:
      ovr.parse([arg], mode)
    assert str(e.value) == message


def test_alias_flags_must_agree_with_overrides():
  same = ovr.merge_aliases({"explain.method": "hirescam"}, {"cam_method": "hirescam",
                                                            "cam_layers": ["head"]})
  assert same == {"explain.method": "hirescam", "explain.layers": ("head",)}
  with pytest.raises(InputError, match="--cam_method=gradcam and --config.explain.method="
                     "hirescam disagree"):
    ovr.merge_aliases({"explain.method": "hirescam"}, {"cam_method": "gradcam"})
  with pytest.raises(InputError) as e:                    # not a silent fallback to the default
    ovr.merge_aliases({}, {"cam_layers": []})
  assert str(e.value) == ("--cam_layers=: empty; give a value (--config.explain.layers) or leave "
                          "the flag out for the workdir's")


def test_argv_split_and_mode():
  argv = ["main.py", "--mode", "explain", "--config.explain.max_scans", "1",
          "--config.explain.method=hirescam", "--workdir=w"]
  assert ovr.mode_of(argv[1:]) == "explain" and ovr.mode_of(["--workdir=w"]) == "train"
  rest, args = ovr.split_argv(argv)
  assert rest == ["main.py", "--mode", "explain", "--workdir=w"]
  assert args == ["--config.explain.max_scans=1", "--config.explain.method=hirescam"]


def _main(*args):
  return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=240)


def test_explain_command_line_overrides(trained_workdir, tmp_path, capsys):
  workdir, _ = trained_workdir
  s = synthetic.generate(3, 96, 64, seed=5)
  write_npz(str(tmp_path / "scans.npz"), images=s.images, masks=s.masks)
  common = ["--mode=explain", f"--workdir={workdir}", f"--input={tmp_path / 'scans.npz'}"]
  r = _main(*common, f"--output={tmp_path / 'out'}", "--config.explain.max_scans=1",
            "--config.explain.layers=head", "--config.explain.deletion_steps=2",
            "--cam_method=hirescam", "--pixel_um=3.87,11.33")
  assert r.returncode == 0, r.stderr
  assert sorted(p for p in os.listdir(tmp_path / "out") if p.endswith("_cam.npz")) == [
      "scans_000_cam.npz"]                       # one scan, straight into --output
  settings = json.loads((tmp_path / "out" / "cam_stats.json").read_text())["settings"]
  assert settings["layers"] == ["head"] and settings["method"] == "hirescam"
  assert settings["scales"] == {str(tmp_path / "scans.npz"): {
      "row_um": 3.87, "col_um": 11.33, "source": "--pixel_um"}}
  import main                                  # the refusals in process (the same entry point)
  capsys.readouterr()
  for bad, message in ((["--config.model.widths=(4,)"], "set when the model was trained"),
                       (["--config=configs/tiny.py"], "uses"),
                       (["--cam_target=all", "--config.explain.target=predicted"], "disagree")):
    assert main.run_command(["main.py", *common, f"--output={tmp_path / 'bad'}", *bad]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "bad")


def test_training_typo_message_is_a_sentence(tmp_path):
  r = _main("--config=configs/tiny.py", "--config.train.num_epoch=2", f"--workdir={tmp_path}")
  assert r.returncode == 2
  assert r.stderr.strip() == ("error: --config.train.num_epoch: no such field; did you mean "
                              "--config.train.num_epochs?")


# --- progress ----------------------------------------------------------------------------


def test_eval_progress_off_a_terminal_is_bounded(trained_workdir, tmp_path, capsys):
  from octseg_jax.modes import evaluate
  workdir, _ = trained_workdir
  s = synthetic.generate(40, 96, 64, seed=3)
  write_npz(str(tmp_path / "many.npz"), images=s.images, masks=s.masks)
  capsys.readouterr()
  evaluate.run(workdir, str(tmp_path / "many.npz"), str(tmp_path / "out"))
  lines = capsys.readouterr().out.splitlines()
  for stage in ("eval: predict", "eval: score"):
    mine = [l for l in lines if l.startswith(stage + ":")]
    assert 1 <= len(mine) <= 11                  # about 10 per loop, never one per scan
    assert mine[-1].startswith(f"{stage}: 40/40 scans")
  assert "paper IoU" not in (tmp_path / "out" / "metrics.md").read_text()   # phantom data


# --- figures -----------------------------------------------------------------------------


def test_labelled_panel_carries_the_class_legend():
  truth = np.zeros((48, 64), np.uint8)
  truth[10:30] = 1
  truth[30:40] = 2
  panel = plots.labelled_panel(np.linspace(0, 1, 48 * 64).reshape(48, 64), truth, truth,
                               title="scan")
  assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[-1] == 3
  assert panel.shape[1] >= 900 and panel.shape[0] >= 200      # readable, not 48 x 192
  colours = {tuple(c) for c in panel.reshape(-1, 3)}
  # Classes 3..7 are absent from the scan: their colours come from the legend alone.
  for k in range(3, 8):
    assert tuple(plots.LABEL_COLOURS[k]) in colours


def test_side_by_side_shows_the_rows_of_the_retina():
  from octseg_jax.anatomy import IGNORE
  truth, pred = np.zeros((100, 16), np.uint8), np.zeros((100, 16), np.uint8)
  truth[:10], truth[40:60], pred[45:71] = IGNORE, 3, 1     # unlabelled rows do not count
  assert plots.retina_rows([truth, pred], 100) == (32, 79)  # rows 40-70, 8 rows around
  assert plots.retina_rows([np.zeros((100, 16), np.uint8)], 100) == (0, 100)
  edge = np.zeros((100, 16), np.uint8)
  edge[:5], edge[60:] = 1, 7
  assert plots.retina_rows([edge], 100, margin=0.1) == (0, 100)
  edge[60:] = 0
  assert plots.retina_rows([edge], 100) == (0, 13)
  fig = plots._label_figure([np.zeros((100, 16))], [truth], [pred], ["scan"], "")
  assert [ax.images[0].get_array().shape[0] for ax in fig.axes if ax.images] == [47] * 3
  assert "rows 32-78 of 100 (the retina) x 16 columns" in fig._suptitle.get_text()
  plots._plt().close(fig)


def test_boundary_colours_are_distinct():
  rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in plots.BOUNDARY_COLOURS])
  dist = np.linalg.norm(rgb[:, None].astype(float) - rgb[None], axis=-1)
  assert len(set(plots.BOUNDARY_COLOURS)) == 8 and dist[~np.eye(8, dtype=bool)].min() > 60


def test_training_curves_reads_columns_by_name(tmp_path):
  path = tmp_path / "log.csv"
  path.write_text("lr,epoch,val_loss,train_loss,val_mean_layer_dice,seconds\n"
                  "0.01,1,2.0,2.5,0.1,3\n0.005,2,1.5,,0.4,3\n")
  from octseg_jax.outputs import training_log
  cols = training_log.as_columns(training_log.read_rows(str(path)))
  np.testing.assert_array_equal(cols["epoch"], [1, 2])
  np.testing.assert_array_equal(cols["lr"], [0.01, 0.005])
  assert np.isnan(cols["train_loss"][1]) and cols["val_mean_layer_dice"][1] == 0.4
  plots.training_curves(str(tmp_path / "curves.png"), str(path), title="run")
  assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
  from octseg_jax.outputs import atomic
  figures = []
  with pytest.MonkeyPatch.context() as m:
    m.setattr(atomic, "save_figure", lambda p, fig: figures.append(fig))
    plots.training_curves("unused.png", str(path))
    plots.training_curves("unused.png", str(path), kept_epoch=1)     # the checkpoint kept
  assert "checkpoint kept (epoch 1)" in [t.get_text() for t in
                                         figures[1].axes[0].get_legend().texts]
  loss = figures[0].axes[0]               # the lowest validation loss (1.5) is at epoch 2
  assert "lowest validation loss (epoch 2)" in [t.get_text() for t in loss.get_legend().texts]
  assert [line.get_xdata()[0] for ax in figures[0].axes for line in ax.lines
          if line.get_linestyle() == ":"] == [2, 2, 2]
  with pytest.raises(ValueError, match="no 'epoch' column"):
    (tmp_path / "bad.csv").write_text("lr\n0.1\n")
    plots.training_curves(str(tmp_path / "c2.png"), str(tmp_path / "bad.csv"))


def test_unsupported_columns():
  t = np.ones((7, 6))
  t[3, 0] = np.nan
  t[:, 5] = np.nan
  np.testing.assert_array_equal(plots.unsupported_columns(t), [1, 0, 0, 0, 0, 1])


def test_paper_numbers_only_for_duke_with_the_paper_split():
  from octseg_jax.outputs import report
  c = tiny_config()
  assert not report.paper_comparable(c, None)                   # phantom
  c.data.source = "duke"
  assert not report.paper_comparable(c, None)                   # subject-wise split
  c.data.split = "random"
  assert report.paper_comparable(c, None)
  assert not report.paper_comparable(c, "other_scans.npz")     # not its validation split
  assert report.fmt(0.9, 2) == "0.90" and report.fmt(np.float32("nan")) == "n/a"


def test_help_exits_0():
  done = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 0 and "--workdir" in done.stdout


def test_image_summary_every_0_means_no_image_summaries(tmp_path):
  from octseg_jax.training import train
  workdir = tmp_path / "w"
  train.train_and_evaluate(tiny_config(**{"train.num_epochs": 2,
                                          "train.image_summary_every": 0}), str(workdir))
  events = b"".join(p.read_bytes() for p in workdir.rglob("events.out.tfevents*"))
  assert b"val/input_truth_prediction" not in events and b"val_loss" in events
