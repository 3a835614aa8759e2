"""Interrupted training and damaged checkpoints."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from octseg_jax.training import train
from conftest import ROOT, tiny_config


def _rows(workdir):
  with open(os.path.join(workdir, "log.csv")) as f:
    return list(csv.DictReader(f))


def _assert_same_run(a, b):
  assert len(a) == len(b)
  for key in ("train_loss", "val_loss", "val_accuracy", "val_mean_layer_dice"):
    np.testing.assert_allclose([float(r[key]) for r in b], [float(r[key]) for r in a],
                               rtol=1e-6, err_msg=key)


def test_kill_9_then_same_command_resumes_and_matches(trained_workdir, tmp_path):
  reference, _ = trained_workdir                       # 3 epochs, same config and seed
  workdir = str(tmp_path / "killed")
  cmd = [sys.executable, os.path.join(ROOT, "main.py"), "--config=configs/tiny.py",
         f"--workdir={workdir}"]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(os.path.join(workdir, "checkpoints", "1")):
      break
    time.sleep(0.2)
  assert proc.poll() is None, "training ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert len(_rows(workdir)) < 3
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "resuming" in done.stdout
  _assert_same_run(_rows(reference), _rows(workdir))
  assert not [f for f in os.listdir(workdir) if ".tmp" in f]     # no half-written outputs


def test_damaged_latest_checkpoint_falls_back_and_says_so(trained_workdir, tmp_path, capsys):
  reference, _ = trained_workdir
  workdir = str(tmp_path / "damaged")
  train.train_and_evaluate(tiny_config(**{"train.num_epochs": 2}), workdir, hooks=[])
  # Damage every file of the newest checkpoint (epoch 2).
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "2")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  capsys.readouterr()
  train.train_and_evaluate(tiny_config(), workdir, hooks=[])
  out = capsys.readouterr().out
  assert "checkpoints/2 could not be read" in out and "resuming" in out and "after epoch 1" in out
  assert "falling back to epoch 1" in out
  _assert_same_run(_rows(reference), _rows(workdir))


def test_a_model_whose_only_best_checkpoint_is_damaged_is_one_error_naming_why(
    trained_workdir, tmp_path, capsys):
  """No warning about falling back to an older checkpoint that does not exist: one error that
  names the damaged epoch and what failed, and nothing moved."""
  import shutil
  import jax
  from conftest import file_hashes
  from octseg_jax.errors import InputError
  from octseg_jax.models import create_model
  from octseg_jax.serving import checkpoints
  workdir = str(tmp_path / "copy")
  shutil.copytree(trained_workdir[0], workdir)
  best = os.path.join(workdir, "best")
  (step,) = [int(s) for s in os.listdir(best) if s.isdigit()]
  for root, _, files in os.walk(os.path.join(best, str(step))):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  before = file_hashes(workdir)
  model = create_model(tiny_config().model)
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 48, 64), np.float32)))
  capsys.readouterr()
  with pytest.raises(InputError) as e:
    checkpoints.restore_best(workdir, checkpoints.inference_payload(v["params"],
                                                                    v["batch_stats"]))
  assert str(e.value).startswith(f"{os.path.abspath(best)}: no readable checkpoint (epoch {step} "
                                 "could not be read: ")
  assert capsys.readouterr().out == "" and file_hashes(workdir) == before
