"""Optimisers and schedules by name; the plateau cut and early stopping of the training loop."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from octseg_jax.learning import optim
from octseg_jax.training import train
from octseg_jax.serving.checkpoints import Checkpoints
from octseg_jax.models import create_model
from octseg_jax.learning.task import Task
from conftest import tiny_config


def _run(tmp_path, config):
  model = create_model(config.model)
  state = train.create_state(config, model, (16, 16), jax.random.key(0))
  plateau = optim.make_plateau(config.train)
  replicated = NamedSharding(train.make_mesh(1), P())
  run = train.Run(config, str(tmp_path), model, Task.from_config(config), None, None, state,
                  plateau.init(jnp.zeros(())), optim.LoopState.initial(),
                  Checkpoints(str(tmp_path)), None, None, replicated)
  return run, plateau


def test_plateau_cuts_after_patience_bad_epochs_and_early_stopping_stops(tmp_path):
  config = tiny_config(**{"train.plateau_patience": 2, "train.plateau_factor": 0.5,
                          "train.early_stopping_patience": 3, "train.num_epochs": 10,
                          "train.learning_rate": 0.1, "train.min_delta": 1e-3})
  run, plateau = _run(tmp_path, config)
  # epoch 1 improves (from inf); 2 by less than min_delta (bad 1); 3 bad 2 -> cut;
  # 4 bad 3 -> early stopping.
  lrs, improved, stopped = [], [], []
  for epoch, val_loss in enumerate([1.0, 0.9995, 1.2, 1.0], start=1):
    improved.append(train.end_epoch(run, plateau, epoch, val_loss))
    lrs.append(optim.current_learning_rate(run.state.opt_state))
    stopped.append(int(run.loop.stopped))
  run.ckpt.wait()
  assert improved == [True, False, False, False]
  assert lrs == [0.1, 0.1, 0.05, 0.05]          # float32 rates read as their shortest decimals
  assert stopped == [0, 0, 0, 1] and run.finished()
  assert int(run.loop.bad_epochs) == 3 and float(run.loop.best_val_loss) == 1.0
  assert run.ckpt.best.all_steps() == [1]
  assert run.ckpt.latest.all_steps() == [3, 4]      # every epoch (checkpoint_every=1), keep 2
  run.ckpt.close()


def test_constant_schedule_never_changes_the_rate(tmp_path):
  config = tiny_config(**{"train.schedule": "constant", "train.plateau_patience": 1,
                          "train.learning_rate": 0.1})
  run, plateau = _run(tmp_path, config)
  for epoch, val_loss in enumerate([1.0, 2.0, 3.0], start=1):
    train.end_epoch(run, plateau, epoch, val_loss)
  run.ckpt.wait()
  assert optim.current_learning_rate(run.state.opt_state) == pytest.approx(0.1)
  run.ckpt.close()


def test_cosine_schedule_warms_up_then_decays_to_zero():
  config = tiny_config(**{"train.schedule": "cosine", "train.warmup_epochs": 2,
                          "train.num_epochs": 10, "train.learning_rate": 0.4})
  lr = optim.learning_rate(config.train, steps_per_epoch=5)
  # warm-up over 10 steps, decay to 0 at step 50
  np.testing.assert_allclose([lr(0), lr(5), lr(10), lr(30), lr(50)],
                             [0.0, 0.2, 0.4, 0.4 * 0.5 * (1 + np.cos(np.pi * 0.5)), 0.0],
                             atol=1e-7)


@pytest.mark.parametrize("name,extra", [("adam", {}), ("adamw", {"train.weight_decay": 0.1}),
                                        ("sgd", {"train.momentum": 0.0})])
def test_optimizers_by_name_make_their_update(name, extra):
  config = tiny_config(**{"train.optimizer": name, "train.learning_rate": 0.1, **extra})
  tx = optim.make_optimizer(config.train, steps_per_epoch=1)
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.5, 0.5])}
  updates, _ = tx.update(grads, tx.init(params), params)
  expected = {"adam": [-0.1, -0.1],                       # first Adam step: -lr * sign(g)
              "adamw": [-0.1 - 0.1 * 0.1 * 1.0, -0.1 + 0.1 * 0.1 * 2.0],
              "sgd": [-0.05, -0.05]}[name]
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)


def test_loop_state_counts_bad_epochs_with_min_delta():
  s = optim.LoopState.initial()
  s, imp1 = s.after_epoch(1.0, 0.1, 2)
  s, imp2 = s.after_epoch(0.95, 0.1, 2)      # not better by more than 0.1
  s, imp3 = s.after_epoch(0.85, 0.1, 2)
  assert (imp1, imp2, imp3) == (True, False, True)
  assert int(s.epoch) == 3 and int(s.bad_epochs) == 0 and float(s.best_val_loss) == 0.85


def test_ema_decay_warms_up_like_tensorflows_moving_average():
  """min(decay, (1 + step) / (10 + step)): 2/11 after the first step, 1/2 after the eighth,
  the decay itself once the ramp passes it."""
  np.testing.assert_allclose(optim.ema_decay_at(0.9, 1), 2 / 11, rtol=1e-6)
  np.testing.assert_allclose(optim.ema_decay_at(0.9, 8), 0.5, rtol=1e-6)
  np.testing.assert_allclose(optim.ema_decay_at(0.9, 1000), 0.9, rtol=1e-6)


def test_ema_update_by_hand():
  average = {"a": jnp.array([1.0, 2.0]), "b": {"c": jnp.array(4.0)}}
  new = {"a": jnp.array([3.0, 6.0]), "b": {"c": jnp.array(0.0)}}
  out = optim.ema_update(average, new, 0.75)
  np.testing.assert_allclose(out["a"], [1.5, 3.0])          # 0.75 * 1 + 0.25 * 3, ...
  np.testing.assert_allclose(out["b"]["c"], 3.0)
  mixed = optim.ema_update({"a": jnp.array([1.0], jnp.bfloat16)}, {"a": jnp.array([3.0])}, 0.5)
  assert mixed["a"].dtype == jnp.bfloat16 and float(mixed["a"][0]) == 2.0   # the average's type
