import csv
import glob
import json
import os

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from octseg_jax.learning import losses
from octseg_jax.training import train
from octseg_jax.data import pipeline
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task
from conftest import tiny_config


def _rows(workdir):
  with open(os.path.join(workdir, "log.csv")) as f:
    return list(csv.DictReader(f))


def test_training_smoke_loss_falls_and_files_exist(trained_workdir):
  workdir, summary = trained_workdir
  rows = _rows(workdir)
  assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
  assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
  assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
  assert list(rows[0]) == ["epoch", "lr", "train_loss", "val_loss", "val_accuracy", "val_dice",
                           "val_iou", "val_mean_layer_dice", "seconds"]
  for name in ("config.json", "split.json", "best_val_metrics.json", "training_curves.png",
               "provenance.json"):
    assert os.path.exists(os.path.join(workdir, name))
  assert not os.path.exists(os.path.join(workdir, ".lock"))
  assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "3"]
  assert os.listdir(os.path.join(workdir, "best")) == [str(summary["epoch"])]
  with open(os.path.join(workdir, "split.json")) as f:
    split = json.load(f)
  assert split["val"]["subjects"] == [3] and 3 not in split["train"]["subjects"]
  # Validation loss of the best epoch is the minimum of the log.
  assert summary["loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))


def test_resume_ends_where_an_uninterrupted_run_ends(trained_workdir, tmp_path):
  reference, _ = trained_workdir
  workdir = str(tmp_path / "resumed")
  # Without the hooks (figures, image summaries): they must not change the run either.
  train.train_and_evaluate(tiny_config(**{"train.num_epochs": 2}), workdir, hooks=[])
  assert len(_rows(workdir)) == 2
  train.train_and_evaluate(tiny_config(), workdir, hooks=[])   # same command, 3 epochs: resumes
  a, b = _rows(reference), _rows(workdir)
  assert len(b) == 3
  for key in ("train_loss", "val_loss", "val_accuracy", "val_mean_layer_dice"):
    np.testing.assert_allclose([float(r[key]) for r in b], [float(r[key]) for r in a],
                               rtol=1e-6, err_msg=key)


def test_a_finished_run_trains_nothing_and_keeps_its_record(trained_workdir, tmp_path, capsys):
  """Rerun with fewer epochs than it has trained (or as many), with the default hooks: one line
  says there is nothing to train, and every file stays as it was (config.json, provenance.json,
  the log, the split, the checkpoints, the training curves, the TensorBoard folder; config.json
  said 2 epochs against provenance's 3), and no file is added."""
  import shutil
  from conftest import file_hashes
  workdir = str(tmp_path / "done")
  shutil.copytree(trained_workdir[0], workdir)
  kept = file_hashes(workdir)
  assert "training_curves.png" in kept and any(k.startswith("tensorboard") for k in kept)
  for epochs in (2, 3):
    capsys.readouterr()
    best = train.train_and_evaluate(tiny_config(**{"train.num_epochs": epochs}), workdir)
    assert (f"nothing to train: {workdir} has trained 3 epochs (train.num_epochs={epochs}); "
            "its config.json is kept") in capsys.readouterr().out
    assert file_hashes(workdir) == kept
    assert best == trained_workdir[1]
  # Only curves lost (a kill after the last checkpoint, before the figure) are drawn again.
  os.remove(os.path.join(workdir, "training_curves.png"))
  train.train_and_evaluate(tiny_config(), workdir)
  again = file_hashes(workdir)
  assert "training_curves.png" in again
  assert {k: v for k, v in again.items() if k != "training_curves.png"} == {
      k: v for k, v in kept.items() if k != "training_curves.png"}


def _weights64(state):
  return jax.tree.map(lambda a: np.asarray(a, np.float64),
                      jax.device_get({"params": state.params, "batch_stats": state.batch_stats}))


def test_sharded_step_equals_unsharded_and_keeps_the_weight_average():
  """One and two devices train alike over 3 steps, and each keeps the average (train.ema_decay
  0.2) a_k = d_k a_(k-1) + (1 - d_k) w_k, d_k = min(decay, (1 + k) / (10 + k)), a_0 = w_0, of
  the parameters and batch statistics it trains: d_1 = 2/11 is below the cap, d_2 and d_3 the
  cap (float64 reference)."""
  assert jax.device_count() >= 2, "conftest asks for two host devices"
  config = tiny_config(**{"train.ema_decay": 0.2})
  model = create_model(config.model)
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(4, 48, 64)).astype(np.float32)
  y = rng.integers(0, 8, size=(4, 48, 64)).astype(np.uint8)
  assert train.create_state(tiny_config(), model, (48, 64), jax.random.key(0)).ema is None
  results = []
  for n in (1, 2):
    mesh = train.make_mesh(n)
    state = train.create_state(config, model, (48, 64), jax.random.key(0))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    data = NamedSharding(mesh, P("data"))
    step = jax.jit(train.make_train_step(model, Task.from_config(config), config.data.augment,
                                         config.train.ema_decay))
    expected = _weights64(state)
    for k in (1, 2, 3):
      state, loss = step(state, jax.device_put(x, data), jax.device_put(y, data),
                         jax.random.key(k))
      d = min(0.2, (1 + k) / (10 + k))
      expected = jax.tree.map(lambda a, w: d * a + (1 - d) * w, expected, _weights64(state))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 jax.device_get(state.ema), expected)
    results.append((float(loss), jax.device_get(state.params)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               results[0][1], results[1][1])


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path / "nan")
  train.train_and_evaluate(tiny_config(**{"train.num_epochs": 1}), workdir, hooks=[])
  monkeypatch.setitem(losses.LOSSES, "hybrid", lambda *a, **k: jnp.float32(jnp.nan))
  with pytest.raises(train.TrainingDiverged, match=r"epoch 2, step 1.*epoch 1"):
    train.train_and_evaluate(tiny_config(**{"train.num_epochs": 2}), workdir, hooks=[])
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["1"]
  assert len(_rows(workdir)) == 1


def test_split_all_trains_and_validates_on_everything():
  config = tiny_config(**{"data.split": "all"})
  train_data, val_data, record = pipeline.build(config)
  assert len(train_data) == len(val_data) == 12
  assert record["train"]["names"] == record["val"]["names"]
