"""Orbax checkpoints of a workdir and what they hold.

`checkpoints/` keeps the latest two epochs (to resume): `train_payload`. `best/` keeps the
epoch with the best validation loss (for eval, predict and explain): `inference_payload`.
These two functions are the one definition of a checkpoint's contents.

Restoring falls back from a damaged latest checkpoint to the newest one that reads. Only
errors of reading count as damage: a checkpoint whose parameters have other names or shapes
than the model's (another model) is an error, and nothing is moved or deleted.
"""

import os
import shutil
import time
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from octseg_jax.errors import InputError, disk_full
from octseg_jax.layout import BEST_DIR, CHECKPOINT_DIR


def train_payload(state, plateau_state, loop) -> Dict:
  """What a resumable checkpoint holds: everything needed to continue bit for bit.
  `loop` is the training loop's small state (epoch, early stopping), a pytree. With weight
  averaging on (train.ema_decay) it also holds the average (`ema`); without, it has no such
  key, as before the option."""
  payload = {"step": state.step, "params": state.params, "batch_stats": state.batch_stats,
             "opt_state": state.opt_state, "plateau": plateau_state, "loop": loop}
  if state.ema is not None:
    payload["ema"] = state.ema
  return payload


def inference_payload(params, batch_stats) -> Dict:
  """What the best checkpoint holds: only what eval, predict and explain need."""
  return {"params": params, "batch_stats": batch_stats}


def _shapes(tree) -> Dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(getattr(leaf, "shape", None) or np.shape(leaf))
          for path, leaf in leaves}


def check_model_matches(manager: ocp.CheckpointManager, step: int, abstract: Dict) -> None:
  """Raises InputError when the stored parameters are not the model's (names or shapes);
  errors reading the metadata are left to the restore (they are damage)."""
  try:
    stored = manager.item_metadata(step)
    stored = getattr(stored, "tree", stored)
    stored_params = {k: stored[k] for k in ("params", "batch_stats") if k in stored}
  except Exception:  # Unreadable metadata: the restore will report the damage.
    return
  expected = {k: abstract[k] for k in ("params", "batch_stats")}
  if _shapes(stored_params) != _shapes(expected):
    raise InputError(f"{manager.directory}/{step}: holds a model with other layers or shapes "
                     "than the configured one (was the model config changed?)")


class Checkpoints:
  """The two checkpoint managers of a workdir."""

  def __init__(self, workdir: str, read_only: bool = False):
    workdir = os.path.abspath(workdir)    # orbax needs absolute paths
    # Several processes save synchronously: asynchronous saves of two managers deadlocked
    # at orbax's barriers with 4 processes (jax 0.10.2, orbax 0.12.8).
    opts = dict(create=not read_only, read_only=read_only,
                enable_async_checkpointing=jax.process_count() == 1)
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, CHECKPOINT_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, **opts),
        item_handlers=ocp.StandardCheckpointHandler())
    # Saved only when validation improves, so its latest step is the best one; keeping one
    # makes that explicit without best_fn (whose absence makes best_step() the latest).
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, BEST_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, **opts),
        item_handlers=ocp.StandardCheckpointHandler())

  def save(self, manager: ocp.CheckpointManager, epoch: int, payload: Any) -> None:
    try:      # also reports a background save of an earlier epoch that failed
      manager.save(epoch, args=ocp.args.StandardSave(payload), force=True)
    except Exception as e:  # orbax raises ValueError, OSError, ... for a failed write
      raise save_failure(manager, e)

  def wait(self) -> None:
    """Waits for the background saves of both managers (the first failure is raised)."""
    for manager in (self.latest, self.best):
      try:
        manager.wait_until_finished()
      except Exception as e:  # orbax raises many types for a failed write
        raise save_failure(manager, e)

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def save_failure(manager: ocp.CheckpointManager, e: BaseException) -> BaseException:
  """The exception to raise for a failed checkpoint save: one line naming the folder when the
  disk is full (the earlier checkpoints are intact: orbax writes a step to a temporary folder
  and renames it when complete), the original exception otherwise."""
  if disk_full(e):
    return InputError(f"{manager.directory}: no space left on device while saving a checkpoint; "
                      "the earlier checkpoints are intact: free space and rerun the same command "
                      "to resume")
  return e


def restore_newest(manager: ocp.CheckpointManager, abstract: Any,
                   quarantine: Optional[str] = None) -> Tuple[Optional[Any], int, list]:
  """(payload, epoch, damaged) of the newest checkpoint that restores; (None, 0, damaged) if
  none does. damaged: (epoch, reason) of each checkpoint that failed to read, newest first
  (with no payload, the last is the oldest, tried last).

  A checkpoint that fails to read (truncated, damaged) is skipped, with a warning where an
  older one is tried next (the caller says what follows when none is left); with
  `quarantine` (a folder) it is moved there, so that the epoch can be saved again. A
  checkpoint of another model raises InputError (check_model_matches) and is left alone.
  """
  damaged = []
  steps = sorted(manager.all_steps(), reverse=True)
  for i, step in enumerate(steps):
    check_model_matches(manager, step, abstract)
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step, damaged
    except Exception as e:  # orbax raises many types for damaged files.
      if not os.path.isdir(os.path.join(str(manager.directory), str(step))):
        raise CheckpointVanished(step) from None   # deleted while read: not damage
      reason = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
      damaged.append((step, reason))
      if i + 1 < len(steps):
        print(f"warning: checkpoint {manager.directory}/{step} could not be read ({reason}); "
              f"falling back to epoch {steps[i + 1]}")
      if quarantine:
        move_to(manager, step, quarantine)
  return None, 0, damaged


def move_to(manager: ocp.CheckpointManager, step: int, folder: str) -> None:
  """Moves one checkpoint out of the manager's folder into `folder` (nothing is deleted)."""
  name = os.path.basename(str(manager.directory))
  if jax.process_index() == 0:     # one mover when several processes share the workdir
    os.makedirs(folder, exist_ok=True)
    shutil.move(os.path.join(str(manager.directory), str(step)),
                os.path.join(folder, f"{name}_{step}"))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(f"move_to {name} {step}")
  manager.reload()


def drop_after(manager: ocp.CheckpointManager, epoch: int) -> None:
  """Deletes checkpoints of epochs after `epoch`: after resuming there, those epochs run again
  and are saved anew."""
  for step in manager.all_steps():
    if step > epoch:
      manager.delete(step)


def on_first_device(abstract: Any) -> Any:
  """Restore targets on this process's first device. Without a sharding in the target orbax
  reuses the saved one, which fails for a checkpoint written on other devices (several
  devices or processes)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=device),
                      abstract)


class CheckpointVanished(Exception):
  """A listed checkpoint was deleted before it was read (a run training into the workdir
  replaced its best checkpoint)."""


def restore_best(workdir: str, abstract: Any, tries: int = 5) -> Tuple[Any, int]:
  """The best checkpoint's payload (on this process's first device), or an InputError if the
  workdir has none. While training replaces the best checkpoint, a listed one can vanish
  before it is read: the listing is read again (`tries` times), and if it keeps changing the
  error says the workdir is busy, not damaged."""
  abstract = on_first_device(abstract)
  path = os.path.join(os.path.abspath(workdir), BEST_DIR)
  if not os.path.isdir(path):
    raise InputError(f"{workdir}: no best/ checkpoint folder (train first, or check --workdir)")
  for attempt in range(tries):
    # The handler is named so that the stored tree's metadata can be read (check_model_matches).
    manager = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False),
                                    item_handlers=ocp.StandardCheckpointHandler())
    try:
      payload, step, damaged = restore_newest(manager, abstract)
    except CheckpointVanished:
      time.sleep(0.2 * (attempt + 1))
      continue
    finally:
      manager.close()
    if payload is None:
      raise InputError(f"{path}: no readable checkpoint" + (
          f" (epoch {damaged[-1][0]} could not be read: {damaged[-1][1]})" if damaged else ""))
    return payload, step
  raise InputError(f"{workdir}: busy: the workdir is being trained (its best checkpoint "
                   "changed while it was read); try again")
