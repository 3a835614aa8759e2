"""What produced a result: versions, XLA flags, device, git commit, host, time, wall time.

Every run and benchmark writes `provenance.json` beside its outputs (never into config.json,
which stays the resolved configuration alone, so that it can be compared and reloaded):

  provenance.write(workdir, config, wall_time_s=time.time() - start)
"""

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
from typing import Any, Dict, Optional

from octseg_jax.layout import PROVENANCE_FILE

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_versions() -> Dict[str, Optional[str]]:
  """Installed versions of Python and the stack (None for a package that is not installed)."""
  versions: Dict[str, Optional[str]] = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def xla_flags() -> Dict[str, Any]:
  """XLA_FLAGS as the process sees them, and which of the project's CPU flags are among them
  (octseg_jax/runtime/xla_setup.py adds them on checked CPU installs unless OCTSEG_XLA_DEFAULTS=1)."""
  from octseg_jax.runtime import xla_setup
  flags = os.environ.get("XLA_FLAGS", "")
  return {"XLA_FLAGS": flags,
          "project_cpu_flags": {name: name in flags for name in
                            xla_setup.cpu_flags_for(xla_setup.installed_version("jaxlib"))},
          "OCTSEG_XLA_DEFAULTS": os.environ.get("OCTSEG_XLA_DEFAULTS"),
          "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS")}


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
  """The CPU's model name as Linux reports it (the first `model name` of `cpuinfo`), else
  platform.processor(); None where neither names one. Timings compare only on one model."""
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
          return value.strip()
  except OSError:
    pass
  return platform.processor() or None


def device_description(device=None) -> Dict[str, Any]:
  """The device a result ran on (default: JAX's first device), how many there were, and the
  most memory this process had in use on it so far (None where the backend keeps no count, as
  on the CPU): to size the memory share of runs that share a GPU (scripts/device_campaign.py)."""
  try:
    import jax
    device = device if device is not None else jax.devices()[0]
    stats = device.memory_stats() or {}
    return {"platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "peak_bytes_in_use": stats.get("peak_bytes_in_use")}
  except Exception as e:  # Provenance must never stop a run from finishing.
    return {"error": f"{type(e).__name__}: {e}", "cpu_count": os.cpu_count()}


def git_commit(root: str = ROOT) -> Dict[str, Any]:
  """HEAD of the checkout this code runs from and whether tracked files differ from it; None
  values when this is not a git checkout or git is missing."""
  def git(*args):
    out = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)
    return out.stdout.strip() if out.returncode == 0 else None
  try:
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
  except (OSError, subprocess.SubprocessError):
    commit = status = None
  return {"commit": commit, "dirty": None if status is None else bool(status)}


def config_digest(config) -> Optional[str]:
  """sha256 of the config's JSON, to tie a provenance file to the config.json beside it."""
  if config is None:
    return None
  text = config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") \
      else json.dumps(config, indent=2, sort_keys=True, default=str)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def collect(config=None, device=None) -> Dict[str, Any]:
  """Everything above plus host and UTC time, as one JSON-ready dict."""
  return {
      "versions": package_versions(),
      "xla": xla_flags(),
      "device": device_description(device),
      "git": git_commit(),
      "host": socket.gethostname(),
      "platform": platform.platform(),
      "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "config_sha256": config_digest(config),
  }


def write(folder: str, config=None, wall_time_s: Optional[float] = None,
          extra: Optional[Dict[str, Any]] = None, filename: str = PROVENANCE_FILE) -> str:
  """Writes collect() (with wall_time_s and any extra fields) to folder/filename atomically
  and returns the path. wall_time_s: seconds of the whole operation (for training, all of
  train_and_evaluate: data, compilation, epochs, validation, checkpoints)."""
  from octseg_jax.outputs.atomic import write_json
  record = collect(config)
  record["wall_time_s"] = wall_time_s
  record.update(extra or {})
  path = os.path.join(folder, filename)
  write_json(path, record)
  return path
