"""Test setup: CPU only, two host devices (for the sharding test), strict rank promotion."""

import atexit
import os
import shutil
import tempfile

from octseg_jax.runtime import xla_setup   # importable through pytest.ini's pythonpath

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One fresh persistent compilation cache for the whole run, shared with the main.py processes
# the tests start: a program compiled once (the tiny training step, say) is loaded after that.
# Nothing is read from or written to the user's ~/.cache.
# (Test modules import this file as `conftest`; were it imported twice, the guard keeps one.)
if "OCTSEG_TESTS_XLA_CACHE" not in os.environ:
  os.environ["OCTSEG_TESTS_XLA_CACHE"] = tempfile.mkdtemp(prefix="octseg-tests-xla-")
  atexit.register(shutil.rmtree, os.environ["OCTSEG_TESTS_XLA_CACHE"], True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["OCTSEG_TESTS_XLA_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=2").strip()
xla_setup.apply_cpu_flags()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

DUKE_DIR = os.path.join(ROOT, "..", "shared", "data", "duke_dme_chiu2015")
needs_duke = pytest.mark.skipif(
    not os.path.exists(os.path.join(DUKE_DIR, "subject_01.npz")),
    reason=f"Duke DME data not found at {DUKE_DIR} (only present in the development checkout)")


def load_script(name: str):
  """scripts/NAME.py as a module (the scripts are not a package)."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def file_hashes(folder) -> dict:
  """{relative path: sha256} of every file below `folder` (to show nothing changed)."""
  import hashlib
  out = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def tiny_config(**overrides):
  """configs/tiny.py with dotted overrides, e.g. tiny_config(**{'train.num_epochs': 2})."""
  from configs import tiny
  from octseg_jax.config.paths import apply_overrides
  return apply_overrides(tiny.get_config(), overrides)


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """One tiny training run shared by the eval, predict and explain tests (3 epochs)."""
  from octseg_jax.training import train
  workdir = str(tmp_path_factory.mktemp("trained"))
  summary = train.train_and_evaluate(tiny_config(), workdir)
  return workdir, summary
