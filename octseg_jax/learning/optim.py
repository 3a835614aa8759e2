"""Optimiser, learning-rate schedule and the per-epoch loop state (plateau, early stopping).

All chosen by name from `config.train`:
  optimizer: 'adam' (the paper), 'adamw' (weight_decay), 'sgd' (momentum).
  schedule: 'plateau' (the paper: the rate is multiplied by plateau_factor after
    plateau_patience epochs without a validation-loss improvement of min_delta; optax's
    reduce_on_plateau stepped once per epoch), 'cosine' (linear warm-up over warmup_epochs,
    then cosine decay to 0 at num_epochs, per step), 'constant'.
Early stopping ends training after early_stopping_patience epochs without improvement.
Weight averaging (train.ema_decay, off at 0): an exponential moving average of the parameters
and batch statistics, updated after every optimiser step with a memory that grows with training
(ema_decay_at), is what is validated and saved as the best checkpoint.
The optimiser's learning rate is an injected hyperparameter, so it is saved in the optimiser
state and read back for the log.
"""

from typing import Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "cosine", "constant")


def _check(name: str, value: str, valid) -> None:
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid: {list(valid)}")


def learning_rate(train_cfg, steps_per_epoch: int):
  """The base rate (plateau, constant) or a per-step schedule (cosine)."""
  _check("schedule", train_cfg.schedule, SCHEDULES)
  if train_cfg.schedule != "cosine":
    return train_cfg.learning_rate
  total = max(int(train_cfg.num_epochs) * steps_per_epoch, 1)
  warmup = min(int(train_cfg.warmup_epochs) * steps_per_epoch, total - 1)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else train_cfg.learning_rate, peak_value=train_cfg.learning_rate,
      warmup_steps=warmup, decay_steps=total, end_value=0.0)


def make_optimizer(train_cfg, steps_per_epoch: int) -> optax.GradientTransformation:
  """The configured optimiser with its learning rate as an injected hyperparameter."""
  _check("optimizer", train_cfg.optimizer, OPTIMIZERS)
  lr = learning_rate(train_cfg, steps_per_epoch)
  if train_cfg.optimizer == "adam":
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)
  if train_cfg.optimizer == "adamw":
    return optax.inject_hyperparams(optax.adamw)(learning_rate=lr,
                                                 weight_decay=train_cfg.weight_decay)
  return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=train_cfg.momentum)


def current_learning_rate(opt_state) -> float:
  """The injected (float32) rate as the shortest decimal that float32 reads back exactly:
  0.001, not 0.0010000000474974513 (what log.csv shows)."""
  return float(str(np.float32(opt_state.hyperparams["learning_rate"])))


def with_learning_rate(opt_state, value: float):
  """The optimiser state with its injected learning rate replaced."""
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(value, jnp.float32)
  return opt_state._replace(hyperparams=hyper)


def ema_decay_at(decay: float, step):
  """The weight the average keeps at optimiser step `step` (1 after the first update):
  min(decay, (1 + step) / (10 + step)), the warm-up of TensorFlow's ExponentialMovingAverage
  with num_updates. Its memory, about (10 + step) / 9 steps, grows with training until it
  reaches 1 / (1 - decay) steps (step 440 at decay 0.98), so that early on, while the weights
  move fast, the average stays near them and the validation loss that drives the schedule and
  early stopping is not that of a blend of far-apart early weights."""
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(average, new, decay):
  """decay * average + (1 - decay) * new, leaf by leaf (two pytrees of the same structure)."""
  return jax.tree.map(lambda a, x: (decay * a + (1.0 - decay) * x).astype(a.dtype), average, new)


def make_plateau(train_cfg) -> optax.GradientTransformationExtraArgs:
  # optax cuts on the `patience`-th epoch without improvement (PyTorch and Keras one later).
  return optax.contrib.reduce_on_plateau(
      factor=train_cfg.plateau_factor, patience=train_cfg.plateau_patience, rtol=0.0,
      atol=train_cfg.min_delta)


@flax.struct.dataclass
class LoopState:
  """The training loop's own state, saved in every resumable checkpoint.

  epoch: epochs finished; best_val_loss: the lowest validation loss so far; bad_epochs:
  epochs since it last improved by more than min_delta; stopped: early stopping fired.
  Leaves are 0-d numpy arrays (orbax saves those, not numpy scalars).
  """
  epoch: np.ndarray
  best_val_loss: np.ndarray
  bad_epochs: np.ndarray
  stopped: np.ndarray

  @classmethod
  def initial(cls) -> "LoopState":
    return cls(np.asarray(0, np.int32), np.asarray(np.inf, np.float64),
               np.asarray(0, np.int32), np.asarray(0, np.int32))

  def after_epoch(self, val_loss: float, min_delta: float,
                  patience: int) -> Tuple["LoopState", bool]:
    """(next state, whether this epoch improved on the best validation loss)."""
    improved = bool(val_loss < float(self.best_val_loss) - min_delta)
    bad = 0 if improved else int(self.bad_epochs) + 1
    return LoopState(np.asarray(int(self.epoch) + 1, np.int32),
                     np.asarray(val_loss if improved else self.best_val_loss, np.float64),
                     np.asarray(bad, np.int32), np.asarray(bad >= patience, np.int32)), improved
