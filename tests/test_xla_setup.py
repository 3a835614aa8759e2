import os

from octseg_jax import xla_setup


def test_cpu_flags_added_once_and_user_flags_win(monkeypatch):
  monkeypatch.setattr(xla_setup, "_installed", lambda name: "0.10.2" if name == "jaxlib" else "")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_onednn=false")
  monkeypatch.delenv("OCTSEG_XLA_DEFAULTS", raising=False)
  flags = xla_setup.apply_cpu_flags()
  assert flags == "--xla_cpu_use_onednn=false --xla_cpu_experimental_ynn_fusion_type="
  assert xla_setup.apply_cpu_flags() == flags                       # idempotent
  assert os.environ["XLA_FLAGS"] == flags


def test_cpu_flags_skipped_on_gpu_unchecked_versions_and_on_request(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "")
  monkeypatch.delenv("OCTSEG_XLA_DEFAULTS", raising=False)
  monkeypatch.setattr(xla_setup, "_installed",
                      lambda n: {"jaxlib": "0.10.2", "jax-cuda12-plugin": "0.10.2"}.get(n, ""))
  assert xla_setup.apply_cpu_flags() == ""
  monkeypatch.setattr(xla_setup, "_installed", lambda n: "0.11.2" if n == "jaxlib" else "")
  assert xla_setup.apply_cpu_flags() == ""
  monkeypatch.setattr(xla_setup, "_installed", lambda n: "0.10.2" if n == "jaxlib" else "")
  monkeypatch.setenv("OCTSEG_XLA_DEFAULTS", "1")
  assert xla_setup.apply_cpu_flags() == ""
