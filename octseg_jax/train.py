"""Training: TrainState, jit train/eval steps, and train_and_evaluate(config, workdir).

Per epoch: train over a (seed, epoch)-determined order with keyed augmentation inside jit,
evaluate the whole validation split, step the plateau schedule on the validation loss, save the
latest checkpoint (and the best), append to the CSV log and TensorBoard. Rerunning on a workdir
with checkpoints resumes from the newest readable one and ends where an uninterrupted run would.
"""

import csv
import json
import os
import time
from typing import Any, Dict, Tuple

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax

from octseg_jax import gradcam, losses, metrics
from octseg_jax.checkpoints import Checkpoints, drop_after, restore_newest
from octseg_jax.data import pipeline
from octseg_jax.errors import InputError
from octseg_jax.io_utils import write_csv, write_json, write_text
from octseg_jax.models import create_model

CSV_HEADER = ("epoch", "lr", "train_loss", "val_loss", "val_accuracy", "val_dice", "val_iou",
              "val_mean_layer_dice", "seconds")


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


def create_state(config, model, input_shape: Tuple[int, int], key: jax.Array) -> TrainState:
  variables = model.init(key, jnp.zeros((1,) + tuple(input_shape), jnp.float32), train=False)
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=config.train.learning_rate)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}), tx=tx)


def payload_of(state: TrainState, plateau_state, loop: Dict) -> Dict:
  """What a checkpoint holds: everything needed to continue bit for bit."""
  return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
          "opt_state": state.opt_state, "plateau": plateau_state,
          "loop": {k: np.asarray(v) for k, v in loop.items()}}


def inference_payload(params, batch_stats) -> Dict:
  """What the best checkpoint holds: only what eval, predict and explain need."""
  return {"params": params, "batch_stats": batch_stats}


def initial_loop() -> Dict:
  return {"epoch": np.int32(0), "best_val_loss": np.float64(np.inf),
          "bad_epochs": np.int32(0), "done": np.int32(0)}


def make_train_step(model, config):
  aug = config.data.augment
  dice_weight, dice_mode = config.loss.dice_weight, config.loss.dice_mode

  def train_step(state: TrainState, x, y, key):
    x, y = pipeline.augment(key, x, y, aug.flip, aug.max_shift, aug.intensity)

    def loss_fn(params):
      logits, updates = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    x, train=True, mutable=["batch_stats"])
      return losses.hybrid(logits, y, dice_weight, dice_mode), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    return state, loss

  return train_step


def make_eval_step(model):
  def eval_step(variables, x, y):
    """Sums over a batch, so a split's metrics do not depend on how it was batched."""
    logits = model.apply(variables, x, train=False)
    k = logits.shape[-1]
    valid = losses.valid_mask(y, k)
    probs = jax.nn.softmax(logits, axis=-1) * valid[..., None]
    onehot = jax.nn.one_hot(y, k) * valid[..., None]
    n_valid = jnp.sum(valid)
    return {
        "ce_sum": losses.cross_entropy(logits, y) * n_valid,
        "n_valid": n_valid,
        "confusion": metrics.confusion_matrix(y, jnp.argmax(logits, -1), k),
        "inter": jnp.sum(probs * onehot, axis=(0, 1, 2)),
        "psum": jnp.sum(probs, axis=(0, 1, 2)),
        "ysum": jnp.sum(onehot, axis=(0, 1, 2)),
    }

  return eval_step


def split_loss(sums: Dict, dice_weight: float, dice_mode: str) -> float:
  """The hybrid loss of a whole split from its accumulated sums."""
  ce = sums["ce_sum"] / max(sums["n_valid"], 1)
  if dice_mode == "global":
    dice = 2 * sums["inter"].sum() / max(sums["psum"].sum() + sums["ysum"].sum(), 1e-12)
  else:
    dice = np.mean((2 * sums["inter"] + 1) / (sums["psum"] + sums["ysum"] + 1))
  return float(ce + dice_weight * (1 - dice))


def evaluate(eval_fn, variables, data: pipeline.Prepared, batch_size: int, sharding) -> Dict:
  """Accumulated sums over a split -> {'loss', 'summary' (both protocols), 'sums'}."""
  totals = None
  for idx in pipeline.epoch_batches(len(data), batch_size, 0, 0, shuffle=False):
    x, y = pipeline.gather(data, idx)
    out = eval_fn(variables, jax.device_put(x, sharding), jax.device_put(y, sharding))
    out = jax.tree.map(lambda a: np.asarray(a, np.float64), out)
    totals = out if totals is None else jax.tree.map(np.add, totals, out)
  return totals


def split_metrics(sums: Dict, config) -> Dict:
  summary = metrics.summarise(sums["confusion"], float(sums["inter"].sum()))
  summary["loss"] = split_loss(sums, config.loss.dice_weight, config.loss.dice_mode)
  return summary


def read_history(path: str, up_to_epoch: int) -> list:
  """CSV rows of epochs <= up_to_epoch (rows written after the restored checkpoint are
  dropped, since those epochs will be run again)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = list(csv.reader(f))[1:]
  return [r for r in rows if r and int(r[0]) <= up_to_epoch]


def config_to_json(config) -> str:
  return config.to_json_best_effort(indent=2)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise InputError(f"{workdir}: no config.json (not a training workdir?)")
  try:
    with open(path) as f:
      stored = json.load(f)
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a readable config ({e})") from None
  # Fields the file lacks take their defaults; invalid values are named.
  from octseg_jax.config_checks import from_workdir_json
  return from_workdir_json(stored, path)


def train_and_evaluate(config, workdir: str) -> Dict:
  """Trains (or resumes) in `workdir`; returns the best epoch's validation metrics."""
  os.makedirs(workdir, exist_ok=True)
  train_data, val_data, record = pipeline.build(config)
  write_json(os.path.join(workdir, "split.json"), record)
  write_text(os.path.join(workdir, "config.json"), config_to_json(config))
  logging.info("train %d scans (subjects %s), val %d scans (subjects %s), input %s",
               len(train_data), record["train"]["subjects"], len(val_data),
               record["val"]["subjects"], record["input_shape"])

  mesh = make_mesh(config.train.num_devices)
  n_dev = mesh.devices.size
  for name in ("batch_size", "eval_batch_size"):
    if config.train[name] % n_dev:
      raise InputError(f"--config.train.{name}={config.train[name]} is not a multiple of "
                       f"the {n_dev} devices")
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())

  model = create_model(config.model, config.train.compute_dtype)
  key = jax.random.key(config.seed)
  init_key, aug_key = jax.random.split(key)
  state = create_state(config, model, record["input_shape"], init_key)
  plateau = optax.contrib.reduce_on_plateau(
      factor=config.train.plateau_factor, patience=config.train.plateau_patience,
      rtol=0.0, atol=config.train.min_delta)
  plateau_state = plateau.init(jnp.zeros(()))
  loop = initial_loop()

  ckpt = Checkpoints(workdir)
  restored, last_epoch = restore_newest(ckpt.latest, payload_of(state, plateau_state, loop),
                                        quarantine=os.path.join(workdir, "damaged_checkpoints"))
  drop_after(ckpt.latest, last_epoch)
  drop_after(ckpt.best, last_epoch)
  if restored is not None:
    state = state.replace(step=restored["step"], params=restored["params"],
                          batch_stats=restored["batch_stats"], opt_state=restored["opt_state"])
    plateau_state, loop = restored["plateau"], restored["loop"]
    logging.info("resumed from epoch %d", last_epoch)
    print(f"resuming {workdir} after epoch {last_epoch}")
  history = read_history(os.path.join(workdir, "log.csv"), int(loop["epoch"]))
  state = jax.device_put(state, replicated)

  train_step = jax.jit(make_train_step(model, config), donate_argnums=(0,))
  eval_fn = jax.jit(make_eval_step(model))
  summary_fn = make_summary_fn(model, config)
  from tensorboardX import SummaryWriter   # heavy import, only when training
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

  try:
    epoch_times = []
    best_summary = _read_best(workdir) if restored is not None else {}
    while not int(loop["done"]) and int(loop["epoch"]) < config.train.num_epochs:
      epoch = int(loop["epoch"]) + 1
      start = time.time()
      step_losses = []
      batches = pipeline.epoch_batches(len(train_data), config.train.batch_size, config.seed,
                                       epoch, shuffle=True)
      epoch_key = jax.random.fold_in(aug_key, epoch)
      for step, idx in enumerate(batches):
        x, y = pipeline.gather(train_data, idx)
        state, loss = train_step(state, jax.device_put(x, data_sharding),
                                 jax.device_put(y, data_sharding),
                                 jax.random.fold_in(epoch_key, step))
        step_losses.append(loss)
      step_losses = np.asarray(jax.device_get(jnp.stack(step_losses)))
      bad = np.nonzero(~np.isfinite(step_losses))[0]
      if bad.size:
        raise TrainingDiverged(
            f"training diverged: loss is {step_losses[bad[0]]} at epoch {epoch}, step "
            f"{bad[0] + 1}; the last good checkpoint (epoch {ckpt.latest.latest_step() or 0}) "
            f"is kept in {os.path.join(workdir, 'checkpoints')}")
      variables = {"params": state.params, "batch_stats": state.batch_stats}
      sums = evaluate(eval_fn, variables, val_data, config.train.eval_batch_size, data_sharding)
      val = split_metrics(sums, config)
      lr = float(state.opt_state.hyperparams["learning_rate"])

      # Plateau schedule and early stopping, once per epoch on the validation loss.
      _, plateau_state = plateau.update(jnp.zeros(()), plateau_state, value=val["loss"])
      new_lr = config.train.learning_rate * float(plateau_state.scale)
      opt_state = state.opt_state._replace(hyperparams={
          **state.opt_state.hyperparams, "learning_rate": jnp.asarray(new_lr, jnp.float32)})
      state = state.replace(opt_state=jax.device_put(opt_state, replicated))
      improved = val["loss"] < float(loop["best_val_loss"]) - config.train.min_delta
      loop = {"epoch": np.int32(epoch),
              "best_val_loss": np.float64(val["loss"] if improved else loop["best_val_loss"]),
              "bad_epochs": np.int32(0 if improved else int(loop["bad_epochs"]) + 1),
              "done": np.int32(0)}
      if int(loop["bad_epochs"]) >= config.train.early_stopping_patience:
        loop["done"] = np.int32(1)
        print(f"early stopping after epoch {epoch}: no validation improvement in "
              f"{config.train.early_stopping_patience} epochs")
      if improved:
        ckpt.save(ckpt.best, epoch, inference_payload(state.params, state.batch_stats))
      if (epoch % config.train.checkpoint_every == 0 or loop["done"]
          or epoch == config.train.num_epochs):
        ckpt.save(ckpt.latest, epoch, payload_of(state, plateau_state, loop))

      seconds = time.time() - start
      epoch_times.append(seconds)
      row = [epoch, lr, float(step_losses.mean()), val["loss"], val["paper"]["accuracy"],
             val["paper"]["global_dice_soft"], val["paper"]["global_iou_soft"],
             val["literature"]["mean_layer_dice"], round(seconds, 3)]
      history.append([str(v) for v in row])
      write_csv(os.path.join(workdir, "log.csv"), CSV_HEADER, history)
      if improved:
        best_summary = dict(val, epoch=epoch)
        write_json(os.path.join(workdir, "best_val_metrics.json"), best_summary)
      for name, value in zip(CSV_HEADER[1:], row[1:]):
        writer.add_scalar(name, value, epoch)
      if epoch % config.train.image_summary_every == 0 or epoch == 1:
        _image_summaries(writer, summary_fn, variables, val_data, epoch)
      writer.flush()
      remaining = config.train.num_epochs - epoch
      eta = np.mean(epoch_times[-5:]) * remaining
      print(f"epoch {epoch}/{config.train.num_epochs}  lr {lr:.2e}  train_loss "
            f"{row[2]:.4f}  val_loss {val['loss']:.4f}  acc {row[4]:.4f}  dice {row[5]:.4f}  "
            f"layer_dice {row[7]:.4f}  {seconds:.1f}s  eta {eta / 60:.1f} min"
            + ("  *best" if improved else ""), flush=True)
  finally:   # also on divergence or interruption: finish pending saves
    ckpt.wait()
    ckpt.close()
    writer.close()
  return best_summary


def _read_best(workdir: str) -> Dict:
  path = os.path.join(workdir, "best_val_metrics.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def make_summary_fn(model, config):
  """jit: variables, x [1, h, w] -> (logits, {layer: normalised maps [K, 1, h, w]})."""
  layers = tuple(config.explain.layers)

  def summary(variables, x):
    out = gradcam.explain_batch(model, variables, x, layers, config.explain.method, "all")
    return out["logits"], {l: out[l]["norm"] for l in layers}

  return jax.jit(summary)


def _image_summaries(writer, summary_fn, variables, data: pipeline.Prepared, epoch: int) -> None:
  """The first validation scan: input, truth and prediction side by side, and per explained
  layer the input followed by the K class Grad-CAM maps over it."""
  from octseg_jax import plots
  logits, maps = summary_fn(variables, jnp.asarray(data.x[:1]))
  pred = np.asarray(jnp.argmax(logits, -1))[0]
  grey = np.repeat((data.x[0] * 255).astype(np.uint8)[..., None], 3, axis=-1)
  panel = np.concatenate([grey, plots.colorize(data.y[0]), plots.colorize(pred)], axis=1)
  writer.add_image("val/input_truth_prediction", panel, epoch, dataformats="HWC")
  for layer, m in maps.items():
    writer.add_image(f"gradcam/{layer}", plots.cam_grid(data.x[0], np.asarray(m[:, 0])), epoch,
                     dataformats="HWC")
