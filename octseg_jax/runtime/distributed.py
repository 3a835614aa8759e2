"""Several processes training one model with JAX's multi-process runtime (jax.distributed).

Every process runs the same program on the same config: the same computations in the same
order and the same number of steps. What differs:

- data: each process gathers only its rows of every global batch (`local_rows`) and the global
  batch is assembled with `jax.make_array_from_process_local_data` (`global_batch`);
- files: only process 0 (`is_writer`) writes workdir files; `on_writer` runs a writer-only
  step and gives every process its verdict, so that all continue or all stop with the same
  one-line error (`agree`);
- checkpoints: every process takes part in orbax saves and restores (orbax coordinates them).

With one process every function here reduces to the plain single-process behaviour.
"""

import hashlib
import itertools
import os
import sys
import threading
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from octseg_jax.errors import InputError

DISTRIBUTED_MODES = ("off", "auto")
DEFAULT_TIMEOUT_S = 300
MESSAGE_BYTES = 1024
XLA_GRACE_S = 30     # XLA's own join deadline comes this much after ours


def initialize(mode: str = DISTRIBUTED_MODES[0], coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None, process_id: Optional[int] = None,
               timeout_s: int = DEFAULT_TIMEOUT_S) -> None:
  """Joins the processes of one run; must come before any other JAX computation.

  mode 'auto': `jax.distributed.initialize()` detects the cluster (Slurm, Open MPI, ...).
  Otherwise all three of coordinator_address (HOST:PORT), num_processes and process_id, or
  none of them (one process: nothing to do). A process that cannot reach the coordinator, or
  whose peers do not all join, ends with an InputError after `timeout_s` seconds.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if mode not in DISTRIBUTED_MODES:
    raise InputError(f"--distributed={mode}: unknown; valid: {', '.join(DISTRIBUTED_MODES)}")
  if mode == "auto":
    if any(v is not None for v in explicit):
      raise InputError("--distributed=auto: give either it or --coordinator_address, "
                       "--num_processes and --process_id, not both")
    kwargs = {}
  elif all(v is None for v in explicit):
    return
  elif any(v is None for v in explicit):
    raise InputError("--coordinator_address, --num_processes, --process_id: give all three "
                     "(or none for one process)")
  else:
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit():
      raise InputError(f"--coordinator_address={coordinator_address}: expected HOST:PORT")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise InputError(f"--process_id={process_id} / --num_processes={num_processes}: need "
                       "0 <= process_id < num_processes")
    kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                  process_id=process_id)
  if timeout_s < 1:
    raise InputError(f"--distributed_timeout_s={timeout_s}: must be at least 1")
  # CPU collectives between processes (so that several processes can run on one machine).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  where = f"--coordinator_address={coordinator_address}" if coordinator_address else \
      "--distributed=auto"
  who = f"process {process_id} of {num_processes}" if process_id is not None else "this process"
  message = f"{where}: {who} could not join the run within {timeout_s} s"
  # XLA aborts the process when joining times out (a C++ fatal error, not an exception):
  # this watchdog ends it first, with one line and exit status 2, before XLA's own deadline.
  watchdog = threading.Timer(timeout_s, _exit_with, (message + " (coordinator unreachable or "
                                                     "not every process started)",))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(initialization_timeout=timeout_s + XLA_GRACE_S, **kwargs)
  except Exception as e:  # JAX raises RuntimeError/XlaRuntimeError/ValueError here.
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise InputError(f"{message} ({first})") from None
  finally:
    watchdog.cancel()
  # The CPU collectives' context is set up by the first collective, with a 30 s deadline for
  # all processes to arrive: do it now, while they are together, not after compilations
  # whose length differs between processes.
  allgather_rows(np.zeros(1, np.int32))


def _exit_with(message: str) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(2)


def process_count() -> int:
  return jax.process_count()


def is_writer() -> bool:
  """Process 0 writes the workdir's files; the others only compute."""
  return jax.process_index() == 0


def _encode(text: str) -> np.ndarray:
  raw = text.encode("utf-8")[:MESSAGE_BYTES - 1].decode("utf-8", "ignore").encode("utf-8")
  out = np.zeros(MESSAGE_BYTES, np.uint8)
  out[0] = 1 if text else 0
  out[1:1 + len(raw)] = np.frombuffer(raw, np.uint8)
  return out


def _decode(row: np.ndarray) -> Optional[str]:
  if not row[0]:
    return None
  return bytes(row[1:]).rstrip(b"\0").decode("utf-8", errors="replace")


def allgather_rows(row: np.ndarray) -> np.ndarray:
  """[num_processes, ...] stack of every process's `row` (same shape and dtype everywhere)."""
  if process_count() == 1:
    return row[None]
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(row))


def agree(error: Optional[str]) -> None:
  """Every process passes its error (or None); if any process has one, every process raises
  InputError: its own message, or the first other process's message naming that process.
  A collective: every process must call it at the same point."""
  rows = allgather_rows(_encode(error or ""))
  if error:
    raise InputError(error)
  for i, row in enumerate(rows):
    message = _decode(row)
    if message is not None:
      raise InputError(f"process {i} stopped the run: {message}")


def run_agreed(fn: Callable[[], Any]) -> Any:
  """fn() on every process; if it raises InputError on any, every process raises (agree)."""
  try:
    result, error = fn(), None
  except InputError as e:
    result, error = None, str(e)
  agree(error)
  return result


def on_writer(fn: Callable[[], Any]) -> Any:
  """fn() on process 0 only (file writes, workdir checks); its verdict reaches every process.
  Returns fn's result on process 0 and None elsewhere."""
  return run_agreed(lambda: fn() if is_writer() else None)


def check_same_config(config_json: str) -> None:
  """Every process must run the same config: InputError naming the first that differs."""
  digest = np.frombuffer(hashlib.sha256(config_json.encode()).digest(), np.uint8)
  rows = allgather_rows(digest)
  for i, row in enumerate(rows):
    if not np.array_equal(row, rows[0]):
      raise InputError(f"process {i} has another config than process 0 (every process needs "
                       "the same code, config file, overrides and data paths)")


def mesh_devices(devices: Sequence[Any], num_devices: int, num_processes: int) -> list:
  """The devices of the data mesh: all global devices in process order (then device id);
  on one process the first `num_devices` (0 = all)."""
  devices = sorted(devices, key=lambda d: (d.process_index, d.id))
  if num_devices and num_processes > 1:
    raise InputError(f"--config.train.num_devices={num_devices}: not available with "
                     f"{num_processes} processes (the mesh uses all {len(devices)} devices of "
                     "all processes); leave it 0")
  if num_devices:
    if num_devices > len(devices):
      raise InputError(f"--config.train.num_devices={num_devices}: only {len(devices)} "
                       "devices are available")
    devices = devices[:num_devices]
  return devices


def local_rows(sharding, global_rows: int) -> slice:
  """The rows of a [global_rows, ...] batch sharded by `sharding` on its first axis that live
  on this process's devices (one contiguous block, as the mesh is in process order)."""
  indices = sharding.addressable_devices_indices_map((global_rows,)).values()
  spans = sorted({(s[0].start or 0, global_rows if s[0].stop is None else s[0].stop)
                  for s in indices})
  for (_, stop), (start, _) in zip(spans, spans[1:]):
    if stop != start:
      raise ValueError(f"this process's batch rows are not contiguous: {spans}")
  return slice(spans[0][0], spans[-1][1])


def global_batch(sharding, local: np.ndarray, global_rows: int) -> jax.Array:
  """The global batch array from this process's rows (`local_rows`)."""
  return jax.make_array_from_process_local_data(sharding, local,
                                                (global_rows,) + local.shape[1:])


def replicate(tree: Any, sharding) -> Any:
  """A pytree (equal on every process) placed whole on every device of `sharding`."""
  if process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(leaf):
    value = np.asarray(leaf) if not isinstance(leaf, jax.Array) else np.asarray(
        jax.device_get(leaf))
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(one, tree)


_BARRIERS = itertools.count()


def barrier(name: str, timeout_s: int = DEFAULT_TIMEOUT_S) -> None:
  """Waits until every process reaches this point (nothing with one process). It is the
  coordination service's barrier, not a device collective, so it also waits out compilations
  that take different times in different processes (gloo waits only 30 s for a peer)."""
  if process_count() > 1:
    from jax._src import distributed as jax_distributed
    jax_distributed.global_state.client.wait_at_barrier(f"octseg {next(_BARRIERS)} {name}",
                                                        timeout_s * 1000)


def compile_together(jitted, *args):
  """`jitted` compiled for `args` on every process, then a barrier, so that the first run's
  collectives find every process ready. Returns the compiled function."""
  compiled = jitted.lower(*args).compile()
  barrier("compiled")
  return compiled
