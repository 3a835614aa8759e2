"""provenance.json: what produced a result, in its own file beside config.json."""

import json
import os

from conftest import ROOT, tiny_config
from octseg_jax.runtime import provenance
def test_collect_records_versions_flags_device_and_commit():
  record = provenance.collect(tiny_config())
  assert set(record["versions"]) == {"python", "jax", "jaxlib", "flax", "optax",
                                     "orbax-checkpoint", "numpy"}
  import jax
  assert record["versions"]["jax"] == jax.__version__
  assert record["xla"]["XLA_FLAGS"] == os.environ.get("XLA_FLAGS", "")
  assert record["device"]["platform"] == jax.devices()[0].platform
  assert record["device"]["device_count"] == jax.device_count()
  stats = jax.devices()[0].memory_stats()
  assert record["device"]["peak_bytes_in_use"] == (stats or {}).get("peak_bytes_in_use")
  if os.path.exists(os.path.join(ROOT, ".git")):
    assert len(record["git"]["commit"]) == 40


def test_the_device_record_carries_the_peak_memory_where_the_backend_counts_it():
  class Device:                      # a GPU-like device: jax's memory_stats() keys
    platform, device_kind = "gpu", "NVIDIA H200"
    def memory_stats(self):
      return {"bytes_in_use": 5, "peak_bytes_in_use": 7 * 2**30}
  assert provenance.device_description(Device())["peak_bytes_in_use"] == 7 * 2**30
  Device.memory_stats = lambda self: None                       # the CPU backend's answer
  assert provenance.device_description(Device())["peak_bytes_in_use"] is None


def test_git_commit_is_none_outside_a_checkout(tmp_path):
  assert provenance.git_commit(str(tmp_path)) == {"commit": None, "dirty": None}


def test_config_digest_changes_with_the_config():
  a, b = tiny_config(), tiny_config(**{"seed": 1})
  assert provenance.config_digest(a) == provenance.config_digest(tiny_config())
  assert provenance.config_digest(a) != provenance.config_digest(b)
  assert provenance.config_digest(None) is None


def test_write_round_trip_leaves_config_json_alone(tmp_path):
  config_json = tmp_path / "config.json"
  config_json.write_text("{}\n")
  path = provenance.write(str(tmp_path), tiny_config(), wall_time_s=12.5,
                          extra={"what": "test"})
  assert path == str(tmp_path / "provenance.json")
  record = json.loads((tmp_path / "provenance.json").read_text())
  assert record["wall_time_s"] == 12.5 and record["what"] == "test"
  assert record["config_sha256"] == provenance.config_digest(tiny_config())
  assert config_json.read_text() == "{}\n"
  assert sorted(os.listdir(tmp_path)) == ["config.json", "provenance.json"]   # no temp file


def test_cpu_model_reads_the_first_model_name_of_cpuinfo(tmp_path, monkeypatch):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n\n"
                  "processor\t: 1\nmodel name\t: Other\n")
  assert provenance.cpu_model(str(info)) == "AMD EPYC 9B14"
  monkeypatch.setattr(provenance.platform, "processor", lambda: "")
  info.write_text("processor\t: 0\nmodel name\t:\n")            # named nowhere: None
  assert provenance.cpu_model(str(info)) is None
  assert provenance.cpu_model(str(tmp_path / "absent")) is None
  monkeypatch.setattr(provenance.platform, "processor", lambda: "arm")
  assert provenance.cpu_model(str(tmp_path / "absent")) == "arm"
