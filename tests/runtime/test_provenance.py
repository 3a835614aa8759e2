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
  if os.path.exists(os.path.join(ROOT, ".git")):
    assert len(record["git"]["commit"]) == 40


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
