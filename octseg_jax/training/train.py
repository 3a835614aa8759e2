"""Training: TrainState, jit train/eval steps, and train_and_evaluate(config, workdir).

Per epoch: train over a (seed, epoch)-determined order with keyed augmentation inside jit,
evaluate the whole validation split, step the schedule and early stopping on the validation
loss, save the latest checkpoint (and the best), write the metrics row, run the hooks.
Rerunning on a workdir checks its stored config (octseg_jax/serving/workdir.py), then resumes from
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

from octseg_jax.runtime import distributed
from octseg_jax.training import hooks as hooks_lib
from octseg_jax.config import checks as config_checks
from octseg_jax.learning import metrics, optim
from octseg_jax.runtime import provenance
from octseg_jax.serving import workdir as workdir_lib
from octseg_jax.serving.checkpoints import (Checkpoints, drop_after, inference_payload, move_to,
                                    restore_newest, train_payload)
from octseg_jax.data import pipeline
from octseg_jax import layout
from octseg_jax.errors import InputError
from octseg_jax.outputs.atomic import write_json
from octseg_jax.models import create_model
from octseg_jax.runtime.progress import Progress
from octseg_jax.learning.task import Task

SLOW_EPOCH_S = 10.0   # show per-step progress when the previous epoch took longer


class TrainState(train_state.TrainState):
  batch_stats: Any = None
  ema: Any = None   # {"params", "batch_stats"} averaged over steps (train.ema_decay), or None


class TrainingDiverged(InputError):
  """The loss became NaN or infinite."""


def make_mesh(num_devices: int = 0) -> Mesh:
  """The data-parallel mesh: all global devices in process order (distributed.mesh_devices)."""
  devices = distributed.mesh_devices(jax.devices(), num_devices, jax.process_count())
  return Mesh(np.array(devices), ("data",))


def create_state(config, model, input_shape: Tuple[int, int], key: jax.Array,
                 steps_per_epoch: int = 1) -> TrainState:
  variables = model.init(key, jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"],
                            batch_stats=variables.get("batch_stats", {}),
                            tx=optim.make_optimizer(config.train, steps_per_epoch))
  if config.train.ema_decay:      # a copy: the step donates the state's buffers
    state = state.replace(ema=jax.tree.map(jnp.copy, trained_variables(state)))
  return state


def trained_variables(state: TrainState) -> Dict:
  """The trained weights as the model's variables: {"params", "batch_stats"}."""
  return {"params": state.params, "batch_stats": state.batch_stats}


def task_method(model, task: Task):
  """What the task's loss reads: the class logits (`__call__`), or every head's output
  (`outputs`) when the model has heads."""
  return "outputs" if task.has_heads else "__call__"


def make_train_step(model, task: Task, augment_config, ema_decay: float = 0.0):
  """jit-able (state, x, y, key) -> (state, loss): augmentation, forward, task loss, update,
  and the weight average's update when ema_decay is not 0."""
  aug = augment_config

  def train_step(state: TrainState, x, y, key):
    x, y = pipeline.augment_from_config(key, x, y, aug)

    def loss_fn(params):
      outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                     x, train=True, mutable=["batch_stats"],
                                     method=task_method(model, task))
      return task.train_loss(outputs, y), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    if ema_decay:
      state = state.replace(ema=optim.ema_update(
          state.ema, trained_variables(state), optim.ema_decay_at(ema_decay, state.step)))
    return state, loss

  return train_step


def make_eval_step(model, task: Task):
  def eval_step(variables, x, y):
    """Sums over a batch, so a split's metrics do not depend on how it was batched."""
    return task.eval_sums(model.apply(variables, x, train=False,
                                      method=task_method(model, task)), y)

  return eval_step


def put_batch(data: pipeline.Prepared, idx: np.ndarray, sharding) -> Tuple[jax.Array, jax.Array]:
  """The global batch of scan indices `idx` [B] as arrays sharded on the batch axis; this
  process gathers only its own rows (all of them with one process)."""
  rows = distributed.local_rows(sharding, len(idx))
  x, y = pipeline.gather(data, idx[rows])
  return (distributed.global_batch(sharding, x, len(idx)),
          distributed.global_batch(sharding, y, len(idx)))


def evaluate(eval_fn, variables, data: pipeline.Prepared, batch_size: int, sharding) -> Dict:
  """The task's sums accumulated (float64) over a whole split (all processes' rows)."""
  totals = None
  for idx in pipeline.epoch_batches(len(data), batch_size, 0, 0, shuffle=False):
    out = eval_fn(variables, *put_batch(data, idx, sharding))
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
    """The weights validated and saved as the best checkpoint: the average when
    train.ema_decay is on, else the trained weights."""
    if self.state.ema is not None:
      return self.state.ema
    return trained_variables(self.state)

  def finished(self) -> bool:
    return bool(int(self.loop.stopped)) or int(self.loop.epoch) >= self.config.train.num_epochs

  def nothing_to_train(self) -> bool:
    """A run resumed finished (it trained before and has no epoch left): its files stay."""
    return self.finished() and int(self.loop.epoch) > 0


def _shardings(config) -> Tuple[NamedSharding, NamedSharding]:
  mesh = make_mesh(config.train.num_devices)
  n_dev = mesh.devices.size
  for name in ("batch_size", "eval_batch_size"):
    if config.train[name] % n_dev:
      raise InputError(f"--config.train.{name}={config.train[name]} is not a multiple of "
                       f"the {n_dev} devices")
  return NamedSharding(mesh, P("data")), NamedSharding(mesh, P())


def say(message: str) -> None:
  """Prints on process 0 only (every process computes the same; one of them speaks)."""
  if distributed.is_writer():
    print(message, flush=True)


def _restore(run: Run, plateau) -> None:
  """Resumes `run` from its newest readable checkpoint, if any. Best checkpoints of epochs
  after the resume point are deleted when they will be recomputed exactly (a clean resume)
  and moved aside, never deleted, when a damaged checkpoint forced an earlier start.
  Every process takes part (orbax coordinates the reads and deletions)."""
  quarantine = os.path.join(run.workdir, "damaged_checkpoints")
  abstract = train_payload(run.state, run.plateau_state, run.loop)
  restored, epoch, damaged = restore_newest(run.ckpt.latest, abstract, quarantine)
  if damaged:                               # an earlier start: later best epochs move aside
    for step in run.ckpt.best.all_steps():
      if step > epoch:
        move_to(run.ckpt.best, step, quarantine)
        say(f"warning: best checkpoint of epoch {step} moved to {quarantine} "
            f"(training restarts after epoch {epoch})")
  drop_after(run.ckpt.latest, epoch)
  drop_after(run.ckpt.best, epoch)
  if restored is None:
    if damaged:
      say(f"warning: checkpoint {run.ckpt.latest.directory}/{damaged[-1][0]} could not be read "
          f"({damaged[-1][1]}) and no older one is left: training starts from the beginning")
    return
  run.state = run.state.replace(step=restored["step"], params=restored["params"],
                                batch_stats=restored["batch_stats"],
                                opt_state=restored["opt_state"], ema=restored.get("ema"))
  run.plateau_state, run.loop = restored["plateau"], restored["loop"]
  best_path = os.path.join(run.workdir, layout.BEST_METRICS_FILE)
  if os.path.exists(best_path):
    run.best = workdir_lib.read_json(best_path)
  say(f"resuming {run.workdir} after epoch {epoch}")


def _host_values(tree):
  """numpy copies of a pytree: the small loop states kept on the host, so that every process
  holds them the same way (orbax writes numpy leaves once, from process 0)."""
  return jax.tree.map(np.asarray, jax.device_get(tree))


def start_run(config, workdir: str, data) -> Tuple[Run, Any]:
  """Builds model, task, state, checkpoints and log for `workdir` and resumes it. The workdir
  must be locked by the caller. On several processes, every process calls it; process 0
  writes the files."""
  train_data, val_data, record = data
  batch_sharding, replicated = _shardings(config)
  model = create_model(config.model, config.train.compute_dtype)
  task = Task.from_config(config)
  init_key = jax.random.split(jax.random.key(config.seed))[0]
  steps = len(pipeline.epoch_batches(len(train_data), config.train.batch_size, 0, 0, False))
  state = create_state(config, model, record["input_shape"], init_key, steps)
  plateau = optim.make_plateau(config.train)

  def write_files():
    write_json(os.path.join(workdir, layout.SPLIT_FILE), record)
    workdir_lib.write_config(workdir, config)

  ckpt = Checkpoints(workdir)
  run = Run(config, workdir, model, task, train_data, val_data,
            distributed.replicate(state, replicated), _host_values(plateau.init(jnp.zeros(()))),
            optim.LoopState.initial(), ckpt, None, batch_sharding, replicated)
  _restore(run, plateau)
  if run.nothing_to_train():                       # a finished run: its record stays as it is
    say(f"nothing to train: {workdir} has trained {int(run.loop.epoch)} epochs"
        + (" and stopped early" if int(run.loop.stopped) else "")
        + f" (train.num_epochs={config.train.num_epochs}); its config.json is kept")
  else:
    distributed.on_writer(write_files)
  run.plateau_state = _host_values(run.plateau_state)
  if distributed.is_writer():
    run.log = hooks_lib.MetricsLog(workdir, int(run.loop.epoch))
  run.state = distributed.replicate(run.state, replicated)
  run.train_step = jax.jit(make_train_step(model, task, config.data.augment,
                                           config.train.ema_decay),
                           donate_argnums=(0,), out_shardings=replicated)
  run.eval_fn = jax.jit(make_eval_step(model, task), out_shardings=replicated)
  if distributed.process_count() > 1:
    _compile_together(run)
  return run, plateau


def _compile_together(run: Run) -> None:
  """Compiles the train and eval steps ahead of time, then waits for every process (the first
  collectives of a step time out when processes finish compiling > 30 s apart)."""
  cfg = run.config.train
  train_idx = np.zeros(cfg.batch_size, np.int64)
  key = jax.random.fold_in(jax.random.key(0), 0)
  run.train_step = distributed.compile_together(
      run.train_step, run.state, *put_batch(run.train_data, train_idx, run.batch_sharding), key)
  run.eval_fn = distributed.compile_together(
      run.eval_fn, run.variables(),
      *put_batch(run.val_data, np.zeros(cfg.eval_batch_size, np.int64), run.batch_sharding))


def train_epoch(run: Run, epoch: int) -> float:
  """One pass over the training split; the mean step loss (raises TrainingDiverged)."""
  config = run.config
  batches = pipeline.epoch_batches(len(run.train_data), config.train.batch_size, config.seed,
                                   epoch, shuffle=True)
  aug_key = jax.random.split(jax.random.key(config.seed))[1]
  epoch_key = jax.random.fold_in(aug_key, epoch)
  slow = not run.epoch_seconds or run.epoch_seconds[-1] > SLOW_EPOCH_S
  progress = Progress(len(batches), f"epoch {epoch}", unit="step", leave=False) \
      if slow and len(batches) > 1 and distributed.is_writer() else None
  step_losses = []
  for step, idx in enumerate(batches):
    x, y = put_batch(run.train_data, idx, run.batch_sharding)
    run.state, loss = run.train_step(run.state, x, y, jax.random.fold_in(epoch_key, step))
    step_losses.append(loss)
    if progress:
      loss.block_until_ready()
      progress.update()
  if progress:
    progress.close()
  step_losses = np.array([float(loss) for loss in step_losses])
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
    _, plateau_state = plateau.update(jnp.zeros(()), run.plateau_state, value=val_loss)
    run.plateau_state = _host_values(plateau_state)
    lr = train_cfg.learning_rate * float(run.plateau_state.scale)
    run.state = run.state.replace(opt_state=distributed.replicate(
        optim.with_learning_rate(run.state.opt_state, lr), run.replicated))
  run.loop, improved = run.loop.after_epoch(val_loss, train_cfg.min_delta,
                                            train_cfg.early_stopping_patience)
  if int(run.loop.stopped):
    say(f"early stopping after epoch {epoch}: no validation improvement in "
        f"{train_cfg.early_stopping_patience} epochs")
  if improved:
    run.ckpt.save(run.ckpt.best, epoch, inference_payload(**run.variables()))
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


def metrics_row(epoch: int, lr: float, train_loss: float, val: Dict, seconds: float) -> Dict:
  """One epoch's row of log.csv and TensorBoard (keys are the column names)."""
  return {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_loss": val["loss"],
          "val_accuracy": val["paper"]["accuracy"],
          "val_dice": val["paper"]["global_dice_soft"],
          "val_iou": val["paper"]["global_iou_soft"],
          "val_mean_layer_dice": val["literature"]["mean_layer_dice"],
          **head_columns(val), "seconds": round(seconds, 3)}


def head_columns(val: Dict) -> Dict:
  """The heads' validation numbers (model resolution) as log.csv columns, when present."""
  out = {}
  if "fluid_dice" in val:
    out["val_fluid_dice"] = val["fluid_dice"]
  if "boundary_head_mae_px" in val:
    out["val_boundary_head_mae_px"] = float(metrics.nanmean(val["boundary_head_mae_px"]))
  return out


def _hook_context(run: Run) -> hooks_lib.Context:
  """What hooks see. On several processes the variables are handed over as host copies: the
  hooks run on process 0 alone, so they must not compute on arrays spread over processes."""
  variables = run.variables if distributed.process_count() == 1 else \
      (lambda: jax.device_get(run.variables()))
  return hooks_lib.Context(run.workdir, run.config, run.model, run.val_data, run.log, variables)


def run_epochs(run: Run, plateau, hooks) -> None:
  """The epoch loop until the run is finished (every process; process 0 writes and hooks)."""
  config, workdir = run.config, run.workdir
  ctx = _hook_context(run) if distributed.is_writer() else None
  distributed.on_writer(lambda: [hook.start(ctx) for hook in hooks])
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
    run.epoch_seconds.append(time.time() - start)
    row = metrics_row(epoch, lr, train_loss, val, run.epoch_seconds[-1])
    eta = np.mean(run.epoch_seconds[-5:]) * (config.train.num_epochs - epoch)

    def write_epoch():
      if improved:
        write_json(os.path.join(workdir, layout.BEST_METRICS_FILE), run.best)
      run.log.write(row)
      for hook in hooks:
        hook.end_epoch(ctx, epoch, row)
      print(epoch_line(row, config.train.num_epochs, eta, improved), flush=True)

    distributed.on_writer(write_epoch)
  distributed.on_writer(lambda: [hook.end(ctx) for hook in hooks])


def _check_and_load(config, workdir: str):
  """The checks before anything is written, on every process: names, the same config on every
  process, the rerun check (process 0, verdict shared), the data (each process)."""
  config_checks.validate(config, check_files=False)    # before anything is touched
  distributed.check_same_config(workdir_lib.config_to_json(config))
  allowed = distributed.on_writer(lambda: workdir_lib.check_rerun(workdir, config))
  data = distributed.run_agreed(lambda: pipeline.build(config))
  if allowed:
    print(f"resuming with changed settings: {', '.join(allowed)}")
  return data


def train_and_evaluate(config, workdir: str, hooks=None) -> Dict:
  """Trains (or resumes) in `workdir`; returns the best epoch's validation metrics.

  Nothing is written before the config check, the data and the lock have succeeded, so a
  refused run leaves no trace. On several processes (distributed.initialize first) every
  process calls this with the same config and workdir (a shared filesystem).
  """
  wall_start = time.time()
  data = _check_and_load(config, workdir)
  lock = workdir_lib.WorkdirLock(workdir)

  def take_lock():
    os.makedirs(workdir, exist_ok=True)
    lock.acquire()

  distributed.on_writer(take_lock)
  run = None
  try:
    run, plateau = start_run(config, workdir, data)
    trained_before = int(run.loop.epoch)
    hooks = hooks_lib.default_hooks() if hooks is None else hooks
    if run.nothing_to_train():
      # A finished run keeps its files (no event file, no figure drawn again); only curves lost
      # to a kill after the last checkpoint are drawn.
      hooks = [h for h in hooks if isinstance(h, hooks_lib.TrainingCurves)
               and not os.path.exists(os.path.join(workdir, layout.CURVES_FILE))]
    run_epochs(run, plateau, hooks if distributed.is_writer() else [])
    if int(run.loop.epoch) > trained_before or not os.path.exists(
        os.path.join(workdir, layout.PROVENANCE_FILE)):   # a finished run's record is kept
      distributed.on_writer(lambda: provenance.write(
          workdir, config, wall_time_s=time.time() - wall_start,
          extra={"mode": "train", "epochs": int(run.loop.epoch),
                 "processes": distributed.process_count()}))
  finally:   # also on divergence or interruption: finish pending saves, then unlock
    try:
      if run is not None:
        finish_run(run)
    finally:
      lock.release()
  return run.best


def finish_run(run) -> None:
  """Waits for the pending checkpoint saves and closes the managers and the log; a failed save
  is raised after everything is closed (a full disk as one InputError naming the folder)."""
  failed = True
  try:
    run.ckpt.wait()
    failed = False
  finally:
    try:
      run.ckpt.close()
    except Exception:  # orbax repeats a failed save here: the first report is the one raised
      if not failed:
        raise
    if run.log is not None:
      run.log.close()
