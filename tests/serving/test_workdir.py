"""Checked workdirs: reruns with another model are refused untouched, allowed fields resume,
old configs load with defaults, one training per workdir (lock), refused runs leave no trace,
hooks skip what the model lacks, the metrics log aligns columns by name."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from octseg_jax.training import hooks
from octseg_jax.training import train
from octseg_jax.serving import workdir
from octseg_jax.errors import InputError
from conftest import ROOT, file_hashes, tiny_config


def test_rerun_with_another_model_is_refused_and_changes_nothing(trained_workdir, tmp_path):
  source, _ = trained_workdir
  wd = str(tmp_path / "copy")
  shutil.copytree(source, wd)
  before = file_hashes(wd)
  with pytest.raises(InputError) as e:
    train.train_and_evaluate(tiny_config(**{"model.widths": (8, 16)}), wd)
  message = str(e.value)
  assert "\n" not in message and "model.widths ((4, 8) -> (8, 16))" in message
  assert "use a new --workdir" in message
  assert file_hashes(wd) == before


def test_allowed_fields_may_change_and_are_listed(trained_workdir):
  wd, _ = trained_workdir
  changed = tiny_config(**{"train.num_epochs": 7, "data.duke_dir": "/elsewhere",
                           "explain.max_scans": 1, "train.checkpoint_every": 2})
  assert workdir.check_rerun(wd, changed) == [
      "data.duke_dir", "explain.max_scans", "train.checkpoint_every", "train.num_epochs"]
  assert workdir.check_rerun(wd, tiny_config()) == []


def test_stored_config_without_new_fields_compares_equal_to_defaults(tmp_path):
  stored = json.loads(tiny_config().to_json_best_effort())
  del stored["loss"]["name"], stored["train"]["optimizer"], stored["train"]["schedule"]
  stored["train"]["topology"] = False                    # a field that no longer exists
  (tmp_path / "config.json").write_text(json.dumps(stored))
  assert workdir.check_rerun(str(tmp_path), tiny_config()) == []
  loaded = workdir.load_config(str(tmp_path))
  assert loaded.loss.name == "hybrid" and loaded.train.optimizer == "adam"
  # The previous shipped model's config (written before these fields existed) loads the same way.
  shipped = workdir.load_config(os.path.join(ROOT, "docs/results/gpu_h200/pretrained_v1"))
  assert shipped.loss.name == "hybrid" and tuple(shipped.model.widths) == (32, 64, 128, 256)


def test_busy_workdir_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
  wd = str(tmp_path / "wd")
  os.makedirs(wd)
  with workdir.WorkdirLock(wd):
    with pytest.raises(InputError, match=rf"busy, process {os.getpid()} on .* is training"):
      train.train_and_evaluate(tiny_config(), wd)
    assert os.listdir(wd) == [".lock"]
  with workdir.WorkdirLock(wd, "is adding fingerprints to its split.json"):
    with pytest.raises(InputError, match=rf"busy, process {os.getpid()} on \S+ is adding "
                       rf"fingerprints to its split.json \(if it is not, delete {wd}/.lock\)$"):
      train.train_and_evaluate(tiny_config(), wd)       # the holder's words, not the refused's
  assert os.listdir(wd) == []                             # released on exit
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  import socket
  with open(os.path.join(wd, ".lock"), "w") as f:
    f.write(f"{dead.pid} {socket.gethostname()}\n")
  with workdir.WorkdirLock(wd) as lock:                   # owner gone: taken over
    assert open(lock.path).read().split()[0] == str(os.getpid())
  with open(os.path.join(wd, ".lock"), "w") as f:         # an older lock: pid and host only
    f.write(f"{os.getppid()} {socket.gethostname()}\n")
  with pytest.raises(InputError, match=rf"process {os.getppid()} on \S+ holds its lock \(if"):
    workdir.WorkdirLock(wd, "is adding fingerprints to its split.json").acquire()


def test_refused_run_creates_nothing(tmp_path):
  wd = tmp_path / "never"
  with pytest.raises(InputError, match="--config.loss.name='focal'"):
    train.train_and_evaluate(tiny_config(**{"loss.name": "focal"}), str(wd))
  with pytest.raises(InputError, match="val_subjects"):
    train.train_and_evaluate(tiny_config(**{"data.val_subjects": (9,)}), str(wd))
  assert not wd.exists()


def test_grad_cam_images_are_skipped_with_one_warning_when_the_layer_is_missing(capsys):
  import jax
  from octseg_jax.data import pipeline
  from octseg_jax.models import create_model
  config = tiny_config(**{"explain.layers": ("dec9_conv1",)})
  model = create_model(config.model)
  x = np.zeros((1, 16, 16), np.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  val = pipeline.Prepared(x, np.zeros((1, 16, 16), np.uint8), ["a"], np.zeros(1))
  hook = hooks.ImageSummaries()
  hook.start(hooks.Context("", config, model, val, None, lambda: variables))
  assert hook.layers == ()
  out = capsys.readouterr().out
  assert out.count("warning: TensorBoard Grad-CAM images skipped") == 1 and "dec9_conv1" in out


def test_tensorboard_grad_cam_maps_are_zero_beyond_the_validation_scan(capsys):
  """The TensorBoard Grad-CAM of the first validation scan, padded to the split's input shape,
  explains the scan's extent only: zero maps beyond it, as explain's."""
  import jax
  from octseg_jax.data import pipeline
  from octseg_jax.models import create_model
  config = tiny_config()
  model = create_model(config.model)
  x = np.random.default_rng(0).uniform(size=(1, 16, 32)).astype(np.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  val = pipeline.Prepared(x, np.zeros((1, 16, 32), np.uint8), ["a"], np.zeros(1),
                          np.array([[16, 20]], np.int32))
  hook = hooks.ImageSummaries()
  hook.start(hooks.Context("", config, model, val, None, lambda: variables))
  _, maps = hook.summary_fn(variables, x, val.extents[0])
  assert maps and all(not np.asarray(m)[..., 20:].any() for m in maps.values())
  assert any(np.asarray(m)[..., :20].any() for m in maps.values())


def test_metrics_log_aligns_changed_columns_by_name(tmp_path):
  log = hooks.MetricsLog(str(tmp_path), resume_epoch=0)
  log.write({"epoch": 1, "train_loss": 0.5, "val_loss": 0.6})
  log.write({"epoch": 2, "train_loss": 0.4, "val_loss": 0.5})
  log.close()
  resumed = hooks.MetricsLog(str(tmp_path), resume_epoch=1)   # epoch 2 runs again
  resumed.write({"epoch": 2, "val_loss": 0.45, "val_extra": 3, "train_loss": 0.41})
  resumed.close()
  lines = open(tmp_path / "log.csv").read().split()
  assert lines == ["epoch,train_loss,val_loss,val_extra", "1,0.5,0.6,", "2,0.41,0.45,3"]


def test_training_curves_are_titled_with_the_workdir_as_named(tmp_path, monkeypatch):
  from octseg_jax import layout
  from octseg_jax.outputs import plots
  drawn = []
  monkeypatch.setattr(plots, "training_curves", lambda path, rows, title, kept_epoch:
                      drawn.append((path, title, kept_epoch)))
  monkeypatch.chdir(tmp_path)
  os.makedirs("runs/a")
  log = hooks.MetricsLog("runs/a", resume_epoch=0)
  log.write({"epoch": 1, "train_loss": 0.5, "val_loss": 0.6})
  with open("runs/a/" + layout.BEST_METRICS_FILE, "w") as f:
    f.write('{"epoch": 1}')
  hooks.TrainingCurves().end(hooks.Context("runs/a", None, None, None, log, None))
  log.close()
  assert drawn == [(os.path.join("runs/a", "training_curves.png"), "training curves of runs/a", 1)]


def test_a_checkpoint_of_another_model_is_an_error_not_damage(trained_workdir, tmp_path):
  import jax
  import jax.numpy as jnp
  from octseg_jax.serving import checkpoints
  from octseg_jax.models import create_model
  wd = str(tmp_path / "copy")
  shutil.copytree(trained_workdir[0], wd)
  before = file_hashes(wd)
  model = create_model(tiny_config(**{"model.widths": (8, 16)}).model)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 64)), train=False))
  with pytest.raises(InputError, match="holds a model with other layers or shapes"):
    checkpoints.restore_best(wd, checkpoints.inference_payload(v["params"], v["batch_stats"]))
  assert file_hashes(wd) == before                     # nothing moved to damaged_checkpoints/
