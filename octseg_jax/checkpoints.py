"""Orbax checkpoints of a workdir: `checkpoints/` keeps the latest two epochs (to resume),
`best/` the epoch with the best validation loss (for eval, predict and explain).

Restoring falls back from a damaged latest checkpoint to the newest one that reads.
"""

import os
import shutil
from typing import Any, Optional, Tuple

from absl import logging
import orbax.checkpoint as ocp

from octseg_jax.errors import InputError


class Checkpoints:
  """The two checkpoint managers of a workdir."""

  def __init__(self, workdir: str, read_only: bool = False):
    workdir = os.path.abspath(workdir)    # orbax needs absolute paths
    opts = dict(create=not read_only, read_only=read_only)
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, **opts))
    # Saved only when validation improves, so its latest step is the best one; keeping one
    # makes that explicit without best_fn (whose absence makes best_step() the latest).
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, "best"),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, **opts))

  def save(self, manager: ocp.CheckpointManager, epoch: int, payload: Any) -> None:
    manager.save(epoch, args=ocp.args.StandardSave(payload), force=True)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def restore_newest(manager: ocp.CheckpointManager, abstract: Any,
                   quarantine: Optional[str] = None) -> Tuple[Optional[Any], int]:
  """(payload, epoch) of the newest checkpoint that restores, or (None, 0) if there is none.

  A checkpoint that fails to read (truncated, damaged) is reported and skipped; with
  `quarantine` (a folder) it is moved there, so that the epoch can be saved again.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return manager.restore(step, args=ocp.args.StandardRestore(abstract)), step
    except Exception as e:  # orbax raises many types for damaged files.
      first_line = (str(e).splitlines() or [""])[0][:200]
      logging.warning("checkpoint %s/%d is damaged (%s: %s)", manager.directory, step,
                      type(e).__name__, first_line)
      print(f"warning: checkpoint {manager.directory}/{step} could not be read "
            f"({type(e).__name__}); falling back to an older one")
      if quarantine:
        os.makedirs(quarantine, exist_ok=True)
        shutil.move(os.path.join(str(manager.directory), str(step)),
                    os.path.join(quarantine, f"{os.path.basename(str(manager.directory))}_{step}"))
        manager.reload()
  return None, 0


def drop_after(manager: ocp.CheckpointManager, epoch: int) -> None:
  """Deletes checkpoints of epochs after `epoch`: after resuming there, those epochs run again
  and are saved anew."""
  for step in manager.all_steps():
    if step > epoch:
      manager.delete(step)


def restore_best(workdir: str, abstract: Any) -> Tuple[Any, int]:
  """The best checkpoint's payload, or an InputError if the workdir has none."""
  path = os.path.join(os.path.abspath(workdir), "best")
  if not os.path.isdir(path):
    raise InputError(f"{workdir}: no best/ checkpoint folder (train first, or check --workdir)")
  manager = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))
  payload, step = restore_newest(manager, abstract)
  manager.close()
  if payload is None:
    raise InputError(f"{path}: no readable checkpoint")
  return payload, step
