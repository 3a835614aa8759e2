import os

import numpy as np
import pytest

from octseg_jax.runtime import xla_setup
def test_cpu_flags_added_once_and_user_flags_win(monkeypatch):
  monkeypatch.setattr(xla_setup, "installed_version", lambda name: "0.10.2" if name == "jaxlib" else "")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_onednn=false")
  monkeypatch.delenv("OCTSEG_XLA_DEFAULTS", raising=False)
  flags = xla_setup.apply_cpu_flags()
  assert flags == "--xla_cpu_use_onednn=false --xla_cpu_experimental_ynn_fusion_type="
  assert xla_setup.apply_cpu_flags() == flags                       # idempotent
  assert os.environ["XLA_FLAGS"] == flags


def test_cpu_flags_skipped_on_gpu_unchecked_versions_and_on_request(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.delenv("OCTSEG_XLA_DEFAULTS", raising=False)
  monkeypatch.setattr(xla_setup, "installed_version",
                      lambda n: {"jaxlib": "0.10.2", "jax-cuda12-plugin": "0.10.2"}.get(n, ""))
  assert xla_setup.apply_cpu_flags() == ""
  monkeypatch.setattr(xla_setup, "installed_version", lambda n: "0.11.2" if n == "jaxlib" else "")
  assert xla_setup.apply_cpu_flags() == ""
  monkeypatch.setattr(xla_setup, "installed_version", lambda n: "0.10.2" if n == "jaxlib" else "")
  monkeypatch.setenv("OCTSEG_XLA_DEFAULTS", "1")
  assert xla_setup.apply_cpu_flags() == ""


def test_flags_are_versioned_by_jaxlib_prefix():
  assert xla_setup.cpu_flags_for("0.10.2") == xla_setup.CPU_FLAGS_BY_JAXLIB["0.10."]
  assert xla_setup.cpu_flags_for("0.1.0") == {} and xla_setup.cpu_flags_for("") == {}


def test_installed_jaxlib_accepts_its_flags_and_computes_the_same():
  """XLA aborts on options it does not know: a fresh process with this jaxlib's options must
  start and give the same convolution result as one with XLA's defaults."""
  import importlib.metadata
  import json
  import subprocess
  import sys
  flags = xla_setup.cpu_flags_for(importlib.metadata.version("jaxlib"))
  if not flags:
    pytest.skip("no CPU options are listed for the installed jaxlib")
  code = ("import json, jax, jax.numpy as jnp, numpy as np;"
          "x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 8)), jnp.float32);"
          "k = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 8, 4)), jnp.float32);"
          "f = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',"
          " dimension_numbers=('NHWC', 'HWIO', 'NHWC'));"
          "g = jax.grad(lambda k: jnp.sum(jnp.sin(f(x, k))))(k);"
          "print(json.dumps(np.asarray(g, np.float64).ravel().tolist()))")
  out = {}
  for name, xla_flags in (("ours", " ".join(f"{k}={v}" for k, v in flags.items())),
                          ("defaults", "")):
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{name}: {run.stderr[-500:]}"
    out[name] = np.array(json.loads(run.stdout.strip().splitlines()[-1]))
  np.testing.assert_allclose(out["ours"], out["defaults"], rtol=1e-5,
                             atol=1e-5 * np.abs(out["defaults"]).max())
