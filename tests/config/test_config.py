"""The config schema (octseg_jax/config/schema.py): one declaration per field, from which the
defaults, the checks, the inference overrides and the resume rule all derive."""

import pytest

from configs import default
from octseg_jax.config import checks, overrides, schema
from octseg_jax.config.paths import MISSING, apply_overrides, flatten, get_field, set_field
from octseg_jax.errors import InputError


def test_configs_default_is_the_schema_field_for_field():
  flat = flatten(default.get_config())
  assert sorted(flat) == sorted(schema.FIELDS)
  for name, field in schema.FIELDS.items():
    assert flat[name] == field.default and type(flat[name]) is type(field.default), name


def test_cpu_crop_recipe_differs_from_duke_cpu_only_in_crop_and_schedule():
  from configs import duke_cpu, duke_cpu_fast
  a, b = flatten(duke_cpu.get_config()), flatten(duke_cpu_fast.get_config())
  assert {k for k in a if a[k] != b[k]} == {
      "data.augment.crop_width", "train.num_epochs", "train.schedule", "train.warmup_epochs",
      "train.early_stopping_patience", "train.checkpoint_every", "train.image_summary_every"}


def test_every_default_passes_its_own_check():
  for name, field in schema.FIELDS.items():
    assert field.check(field.default) is None, name
  checks.validate(default.get_config(), check_files=False)


@pytest.mark.parametrize("field, bad", [
    ("model.kernel", (0, 3)), ("model.kernel", (3,)), ("model.position_channel", 1),
    ("data.augment.crop_width", -8), ("data.augment.speckle", float("nan")),
    ("data.augment.column_shift", -1), ("data.augment.row_scale", 0.6),
    ("data.augment.row_scale", -0.1), ("explain.removal_batch_mb", 0),
    ("data.duke_dir", 3), ("explain.road_noise", 2.0),
])
def test_fields_that_had_no_check_refuse_bad_values(field, bad):
  config = default.get_config()
  stored = flatten(config)
  stored[field] = bad
  nested = {}
  for k, v in stored.items():
    node = nested
    *parents, leaf = k.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  with pytest.raises(InputError, match=rf"^--config\.{field}="):
    checks.validate(nested, check_files=False)


def test_a_tuple_field_typed_with_a_non_number_is_quoted_as_typed():
  """absl keeps --config.model.widths=4,8,x as the one-string tuple ('4,8,x',): the message
  gives the text as typed, not the tuple."""
  config = apply_overrides(default.get_config(), {"model.widths": ("4,8,x",)})
  with pytest.raises(InputError) as e:
    checks.validate(config, check_files=False)
  assert str(e.value) == "--config.model.widths=4,8,x: expected 1 to 12 integers >= 1"


def test_inference_fields_parse_their_defaults_back():
  for name in schema.inference_fields():
    field = schema.FIELDS[name]
    d = field.default
    text = ",".join(map(str, d)) if isinstance(d, tuple) else str(d)
    assert field.parse(text) == d, name


def test_inference_and_training_share_one_range():
  """explain.road_noise was any positive number at inference but (0, 1] in training."""
  with pytest.raises(InputError, match=r"road_noise=2: expected a number in \(0, 1\]"):
    overrides.parse(["--config.explain.road_noise=2"], "explain")
  assert overrides.parse(["--config.explain.road_noise=0.5"], "explain") == \
      {"explain.road_noise": 0.5}
  with pytest.raises(InputError, match="set when the model was trained"):
    overrides.parse(["--config.model.kernel=7,3"], "predict")
  with pytest.raises(InputError, match="did you mean --config.explain.max_scans"):
    overrides.parse(["--config.explain.max_scan=2"], "explain")


def test_data_paths_are_settable_where_they_are_read():
  """eval reads the workdir's validation scans from the data folder; predict and explain read
  --input, so there the data paths are refused rather than ignored."""
  assert overrides.parse(["--config.data.duke_dir=/d"], "eval") == {"data.duke_dir": "/d"}
  for mode in ("predict", "explain"):
    with pytest.raises(InputError, match=rf"^--config.data.folder_dir: only --mode=eval accepts "
                       rf"it, not --mode={mode}$"):
      overrides.parse(["--config.data.folder_dir=/d"], mode)
  assert "data.duke_dir" in schema.inference_fields("eval")
  assert "data.duke_dir" not in schema.inference_fields("predict")
  assert "train.eval_batch_size" in schema.inference_fields("predict")
  for mode in ("explain", "predict"):            # README: each mode accepts its own MODE.*
    own = {k for k in schema.FIELDS if k.startswith(mode + ".")}
    assert own <= set(schema.inference_fields(mode)), own - set(schema.inference_fields(mode))
  for name, field in schema.FIELDS.items():       # a misspelt mode would hide a field
    if isinstance(field.inference, tuple):
      assert set(field.inference) <= set(overrides.INFERENCE_MODES), name


def test_resumable_fields_in_words():
  words = schema.resumable_summary().split(", ")
  assert {"explain.*", "predict.*", "benchmark.*", "train.num_epochs"} <= set(words)
  assert "train.batch_size" not in words and "model.*" not in words
  assert "train.num_epochs" in schema.resumable_fields()
  assert "explain.layers" in schema.resumable_fields()


def test_dotted_paths_round_trip():
  config = default.get_config()
  set_field(config, "train.num_epochs", 7)
  assert get_field(config, "train.num_epochs") == 7
  assert get_field(config, "train.no_such") is MISSING
  assert get_field({"a": 1}, "a.b") is MISSING
  apply_overrides(config, {"data.synthetic.width": 96, "seed": 3})
  assert flatten(config)["data.synthetic.width"] == 96 and config.seed == 3
  assert flatten({"a": {"b": [1, 2]}}) == {"a.b": (1, 2)}


def test_choices_are_the_registries():
  from octseg_jax.cam import gradcam
  from octseg_jax.learning.losses import LOSSES
  assert schema.choices("explain.method") == tuple(gradcam.METHODS)
  assert set(schema.choices("loss.name")) == set(LOSSES)
