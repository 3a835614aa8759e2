"""Training: TrainState, jit train/eval steps, and train_and_evaluate(config, workdir).

Per epoch: train over a (seed, epoch)-determined order with keyed augmentation inside jit,
evaluate the whole validation split, step the schedule and early stopping on the validation
loss, save the latest checkpoint (and the best), write the metrics row, run the hooks.
Rerunning on a workdir checks its stored config (octseg_jax/workdir.py), then resumes from
the newest readable checkpoint and ends where an uninterrupted run would.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Tuple

from flax.training import train_state
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from octseg_jax import hooks as hooks_lib
from octseg_jax import losses, optim, provenance
from octseg_jax import workdir as workdir_lib
from octseg_jax.checkpoints import (Checkpoints, drop_after, inference_payload, move_to,
                                    restore_newest, train_payload)
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.io_utils import write_json
from octseg_jax.models import create_model
from octseg_jax.progress import Progress
from octseg_jax.task import Task

SLOW_EPOCH_S = 10.0   # show per-step progress when the previous epoch took longer


class TrainState(train_state.TrainState):
  batch_stats: Any = None


class TrainingDiverged(InputError):
  """The loss became NaN or infinite."""


def make_mesh(num_devices: int = 0) -> Mesh:
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise InputError(f"--config.train.num_devices={num_devices}: only {len(devices)} "
                       "devices are available")
    devices = devices[:num_devices]
  return Mesh(np.array(devices), ("data",))


def check_names(config) -> None:
  """Every name chosen in the config exists (else one line naming the option)."""
  for option, value, valid in (
      ("loss.name", config.loss.name, sorted(losses.LOSSES)),
      ("loss.dice_mode", config.loss.dice_mode, losses.DICE_MODES),
      ("train.optimizer", config.train.optimizer, optim.OPTIMIZERS),
      ("train.schedule", config.train.schedule, optim.SCHEDULES)):
    if value not in valid:
      raise InputError(f"--config.{option}={value!r}: unknown; valid: {', '.join(valid)}")


def create_state(config, model, input_shape: Tuple[int, int], key: jax.Array,
                 steps_per_epoch: int = 1) -> TrainState:
  variables = model.init(key, jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}),
                           tx=optim.make_optimizer(config.train, steps_per_epoch))


def make_train_step(model, task: Task, augment_config):
  """jit-able (state, x, y, key) -> (state, loss): augmentation, forward, task loss, update."""
  aug = augment_config

  def train_step(state: TrainState, x, y, key):
    x, y = pipeline.augment_from_config(key, x, y, aug)

    def loss_fn(params):
      logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    x, train=True, mutable=["batch_stats"])
      return task.train_loss(logits, y), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    return state, loss

  return train_step


def make_eval_step(model, task: Task):
  def eval_step(variables, x, y):
    """Sums over a batch, so a split's metrics do not depend on how it was batched."""
    return task.eval_sums(model.apply(variables, x, train=False), y)

  return eval_step


def evaluate(eval_fn, variables, data: pipeline.Prepared, batch_size: int, sharding) -> Dict:
  """The task's sums accumulated (float64) over a whole split."""
  totals = None
  for idx in pipeline.epoch_batches(len(data), batch_size, 0, 0, shuffle=False):
    x, y = pipeline.gather(data, idx)
    out = eval_fn(variables, jax.device_put(x, sharding), jax.device_put(y, sharding))
    out = jax.tree.map(lambda a: np.asarray(a, np.float64), out)
    totals = out if totals is None else jax.tree.map(np.add, totals, out)
  return totals


@dataclasses.dataclass
class Run:
  """Everything one training run holds between epochs."""
  config: Any
  workdir: str
  model: Any
  task: Task
  train_data: pipeline.Prepared
  val_data: pipeline.Prepared
  state: TrainState
  plateau_state: Any
  loop: optim.LoopState
  ckpt: Checkpoints
  log: hooks_lib.MetricsLog
  batch_sharding: NamedSharding
  replicated: NamedSharding
  train_step: Any = None
  eval_fn: Any = None
  best: Dict = dataclasses.field(default_factory=dict)
  epoch_seconds: List[float] = dataclasses.field(default_factory=list)

  def variables(self) -> Dict:
    return {"params": self.state.params, "batch_stats": self.state.batch_stats}

  def finished(self) -> bool:
    return bool(int(self.loop.stopped)) or int(self.loop.epoch) >= self.config.train.num_epochs


def _shardings(config) -> Tuple[NamedSharding, NamedSharding]:
  mesh = make_mesh(config.train.num_devices)
  n_dev = mesh.devices.size
  for name in ("batch_size", "eval_batch_size"):
    if config.train[name] % n_dev:
      raise InputError(f"--config.train.{name}={config.train[name]} is not a multiple of "
                       f"the {n_dev} devices")
  return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def _restore(run: Run, plateau) -> None:
  """Resumes `run` from its newest readable checkpoint, if any. Best checkpoints of epochs
  after the resume point are deleted when they will be recomputed exactly (a clean resume)
  and moved aside, never deleted, when a damaged checkpoint forced an earlier start."""
  quarantine = os.path.join(run.workdir, "damaged_checkpoints")
  abstract = train_payload(run.state, run.plateau_state, run.loop)
  restored, epoch, damaged = restore_newest(run.ckpt.latest, abstract, quarantine)
  if damaged:
    for step in run.ckpt.best.all_steps():
      if step > epoch:
        move_to(run.ckpt.best, step, quarantine)
        print(f"warning: best checkpoint of epoch {step} moved to {quarantine} "
              f"(training restarts after epoch {epoch})")
  drop_after(run.ckpt.latest, epoch)
  drop_after(run.ckpt.best, epoch)
  if restored is None:
    return
  run.state = run.state.replace(step=restored["step"], params=restored["params"],
                                batch_stats=restored["batch_stats"],
                                opt_state=restored["opt_state"])
  run.plateau_state, run.loop = restored["plateau"], restored["loop"]
  best_path = os.path.join(run.workdir, "best_val_metrics.json")
  if os.path.exists(best_path):
    run.best = workdir_lib.read_json(best_path)
  print(f"resuming {run.workdir} after epoch {epoch}")


def start_run(config, workdir: str, data) -> Tuple[Run, Any]:
  """Builds model, task, state, checkpoints and log for `workdir` and resumes it. The workdir
  must be locked by the caller."""
  train_data, val_data, record = data
  batch_sharding, replicated = _shardings(config)
  model = create_model(config.model, config.train.compute_dtype)
  task = Task.from_config(config)
  init_key = jax.random.split(jax.random.key(config.seed))[0]
  steps = len(pipeline.epoch_batches(len(train_data), config.train.batch_size, 0, 0, False))
  state = create_state(config, model, record["input_shape"], init_key, steps)
  plateau = optim.make_plateau(config.train)
  write_json(os.path.join(workdir, "split.json"), record)
  workdir_lib.write_config(workdir, config)
  ckpt = Checkpoints(workdir)
  run = Run(config, workdir, model, task, train_data, val_data, state,
            plateau.init(jnp.zeros(())), optim.LoopState.initial(), ckpt, None,
            batch_sharding, replicated)
  _restore(run, plateau)
  run.log = hooks_lib.MetricsLog(workdir, int(run.loop.epoch))
  run.state = jax.device_put(run.state, replicated)
  run.train_step = jax.jit(make_train_step(model, task, config.data.augment),
                           donate_argnums=(0,))
  run.eval_fn = jax.jit(make_eval_step(model, task))
  return run, plateau


def train_epoch(run: Run, epoch: int) -> float:
  """One pass over the training split; the mean step loss (raises TrainingDiverged)."""
  config = run.config
  batches = pipeline.epoch_batches(len(run.train_data), config.train.batch_size, config.seed,
                                   epoch, shuffle=True)
  aug_key = jax.random.split(jax.random.key(config.seed))[1]
  epoch_key = jax.random.fold_in(aug_key, epoch)
  slow = not run.epoch_seconds or run.epoch_seconds[-1] > SLOW_EPOCH_S
  progress = Progress(len(batches), f"epoch {epoch}", unit="step", leave=False) \
      if slow and len(batches) > 1 else None
  step_losses = []
  for step, idx in enumerate(batches):
    x, y = pipeline.gather(run.train_data, idx)
    run.state, loss = run.train_step(run.state, jax.device_put(x, run.batch_sharding),
                                     jax.device_put(y, run.batch_sharding),
                                     jax.random.fold_in(epoch_key, step))
    step_losses.append(loss)
    if progress:
      loss.block_until_ready()
      progress.update()
  if progress:
    progress.close()
  step_losses = np.asarray(jax.device_get(jnp.stack(step_losses)))
  bad = np.nonzero(~np.isfinite(step_losses))[0]
  if bad.size:
    raise TrainingDiverged(
        f"training diverged: loss is {step_losses[bad[0]]} at epoch {epoch}, step "
        f"{bad[0] + 1}; the last good checkpoint (epoch {run.ckpt.latest.latest_step() or 0})"
        f" is kept in {os.path.join(run.workdir, 'checkpoints')}")
  return float(step_losses.mean())


def end_epoch(run: Run, plateau, epoch: int, val_loss: float) -> bool:
  """Schedule, early stopping and checkpoints after an epoch; whether it improved."""
  train_cfg = run.config.train
  if train_cfg.schedule == "plateau":
    _, run.plateau_state = plateau.update(jnp.zeros(()), run.plateau_state, value=val_loss)
    lr = train_cfg.learning_rate * float(run.plateau_state.scale)
    run.state = run.state.replace(opt_state=jax.device_put(
        optim.with_learning_rate(run.state.opt_state, lr), run.replicated))
  run.loop, improved = run.loop.after_epoch(val_loss, train_cfg.min_delta,
                                            train_cfg.early_stopping_patience)
  if int(run.loop.stopped):
    print(f"early stopping after epoch {epoch}: no validation improvement in "
          f"{train_cfg.early_stopping_patience} epochs")
  if improved:
    run.ckpt.save(run.ckpt.best, epoch, inference_payload(run.state.params,
                                                          run.state.batch_stats))
  if epoch % train_cfg.checkpoint_every == 0 or run.finished():
    run.ckpt.save(run.ckpt.latest, epoch, train_payload(run.state, run.plateau_state,
                                                        run.loop))
  return improved


def epoch_line(row: Dict, num_epochs: int, eta_s: float, improved: bool) -> str:
  """The progress line of an epoch, read from its metrics row by name."""
  return (f"epoch {row['epoch']}/{num_epochs}  lr {row['lr']:.2e}  train_loss "
          f"{row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  acc "
          f"{row['val_accuracy']:.4f}  dice {row['val_dice']:.4f}  layer_dice "
          f"{row['val_mean_layer_dice']:.4f}  {row['seconds']:.1f}s  eta {eta_s / 60:.1f} min"
          + ("  *best" if improved else ""))


def train_and_evaluate(config, workdir: str, hooks=None) -> Dict:
  """Trains (or resumes) in `workdir`; returns the best epoch's validation metrics.

  Nothing is written before the config check, the data and the lock have succeeded, so a
  refused run leaves no trace.
  """
  wall_start = time.time()
  check_names(config)
  allowed = workdir_lib.check_rerun(workdir, config)
  data = pipeline.build(config)
  if allowed:
    print(f"resuming with changed settings: {', '.join(allowed)}")
  os.makedirs(workdir, exist_ok=True)
  with workdir_lib.WorkdirLock(workdir):
    run, plateau = start_run(config, workdir, data)
    hooks = hooks_lib.default_hooks() if hooks is None else hooks
    ctx = hooks_lib.Context(workdir, config, run.model, run.val_data, run.log, run.variables)
    try:
      for hook in hooks:
        hook.start(ctx)
      while not run.finished():
        epoch, start = int(run.loop.epoch) + 1, time.time()
        lr = optim.current_learning_rate(run.state.opt_state)
        train_loss = train_epoch(run, epoch)
        sums = evaluate(run.eval_fn, run.variables(), run.val_data,
                        config.train.eval_batch_size, run.batch_sharding)
        val = run.task.split_metrics(sums)
        improved = end_epoch(run, plateau, epoch, val["loss"])
        if improved:
          run.best = dict(val, epoch=epoch)
          write_json(os.path.join(workdir, "best_val_metrics.json"), run.best)
        run.epoch_seconds.append(time.time() - start)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val["loss"],
               "val_accuracy": val["paper"]["accuracy"],
               "val_dice": val["paper"]["global_dice_soft"],
               "val_iou": val["paper"]["global_iou_soft"],
               "val_mean_layer_dice": val["literature"]["mean_layer_dice"],
               "seconds": round(run.epoch_seconds[-1], 3)}
        run.log.write(row)
        for hook in hooks:
          hook.end_epoch(ctx, epoch, row)
        eta = np.mean(run.epoch_seconds[-5:]) * (config.train.num_epochs - epoch)
        print(epoch_line(row, config.train.num_epochs, eta, improved), flush=True)
      for hook in hooks:
        hook.end(ctx)
      provenance.write(workdir, config, wall_time_s=time.time() - wall_start,
                       extra={"mode": "train", "epochs": int(run.loop.epoch)})
    finally:   # also on divergence or interruption: finish pending saves
      run.ckpt.wait()
      run.ckpt.close()
      run.log.close()
  return run.best
