"""The committed pretrained/ workdir loads and segments scans."""

import json
import os

import numpy as np

from octseg_jax.learning import scoring
from octseg_jax.serving import inference
from octseg_jax.geometry import boundaries as geom
from octseg_jax.data import duke, synthetic
from conftest import DUKE_DIR, ROOT, load_script, needs_duke

PRETRAINED = os.path.join(ROOT, "pretrained")


def test_pretrained_is_an_ensemble_with_a_fluid_head_and_predicts_any_size():
  """pretrained/ is self-contained (members by relative path), the models that stand for it on
  held-out eyes (doc_tables.held_out_models: its members, or its recipe's cross-validation)
  were held out on disjoint subjects that together cover 1-8, and it gives probabilities, fluid
  and the members' spread at any scan size. It smooths its boundaries along the B-scan with the
  sd those models' cross-validation chose, and the command line can turn that off."""
  trained = inference.load_trained(PRETRAINED)
  assert isinstance(trained, inference.Ensemble) and not trained.flip
  doc_tables = load_script("doc_tables")
  src = doc_tables.Sources(ROOT)
  models = doc_tables.held_out_models(src)
  chosen = doc_tables.shipped_numbers(src)["smoothing"]["sd"]   # refused unless cross-validated
  assert [m.config.predict.smooth_sd_columns for m in trained.members] == (
      [chosen] * len(trained.members))
  off = inference.load_trained(PRETRAINED, {"predict.smooth_sd_columns": 0.0, "predict.members": 1})
  assert off.config.predict.smooth_sd_columns == 0.0
  # Its members trained on every subject (stand-ins stand for them on held-out eyes): the
  # ensemble flags as docs/results.md section 11's rule chose on the stand-ins' seed ensembles,
  # and where that is the position sd, so does one member, at that threshold; otherwise one
  # member flags by the position sd at the threshold the stand-ins' own cross-validation chose.
  from octseg_jax.modes.predict import column_flag
  assert doc_tables.stand_ins(doc_tables.shipped_members(src))
  found = doc_tables.evidence_set(src, doc_tables.FLAG_EVIDENCE, models,
                                  doc_tables.flag_set_models)
  chosen_um = found[1]["flags"]["position_sd"]["cv"]["chosen_um"]
  position = ("boundary_position_sd_um", "uncertain_position_sd_um")
  spread_um, chosen_um = doc_tables.ensemble_flag_settings(src, chosen_um)
  assert column_flag(trained)[:3] == (("boundary_sd_um", "uncertain_um", spread_um) if spread_um
                                      else position + (chosen_um,))
  assert column_flag(off)[:3] == position + (chosen_um,)
  assert all(m.workdir.startswith(PRETRAINED) for m in trained.members)
  held_out = [s for m in models for s in m["scored_on"]]
  assert sorted(held_out) == list(range(1, 9))             # each subject held out exactly once
  for m in models:
    assert not set(m["split"]["train"]["subjects"]) & set(m["scored_on"])
  for m in trained.members:
    assert tuple(m.config.model.widths) == (16, 32, 64, 128) and m.head_names == ("fluid",)
  image = synthetic.generate(1, 300, 210, seed=3).images[0]
  (out,) = inference.predict_outputs(trained, [image])
  assert out["probs"].shape == (300, 210, 8) and out["fluid"].shape == (300, 210)
  np.testing.assert_allclose(out["probs"].sum(-1), 1.0, atol=1e-4)
  assert 0 <= out["fluid"].min() and out["fluid"].max() <= 1
  assert out["boundary_sd_rows"].shape == (8, 210)


@needs_duke
def test_pretrained_knows_its_training_scans_by_their_pixels():
  """Every member's split.json fingerprints each scan it trained on (scripts/add_fingerprints.py
  for members trained before training recorded them), so a Duke training scan under another
  name is flagged; a changed pixel is not."""
  trained = inference.load_trained(PRETRAINED)
  for m in trained.members:
    train = m.split["train"]
    assert len(train["fingerprints"]) == len(train["names"]) > 0
  scans = duke.load_npz(os.path.join(DUKE_DIR, "subject_01.npz"))
  known = inference.training_scans(trained)
  image = scans.images[0]
  changed = image.copy()
  changed[0, 0] = 1 if changed[0, 0] == 0 else 0
  assert known.flags(["renamed_copy", "renamed_changed"], [image, changed])[0] == [True, False]


@needs_duke
def test_pretrained_segments_real_scans_it_was_trained_on():
  # A fit check, not a generalisation claim: subjects 1-8 were all in its members' training data.
  trained = inference.load_trained(PRETRAINED)
  scans = duke.load_npz(os.path.join(DUKE_DIR, "subject_03.npz")).subset([0, 5])
  probs = inference.predict_probs(trained, list(scans.images))
  result = scoring.score(probs, list(scans.masks), scans.subjects, 3.87)
  assert result["raw"]["literature"]["mean_layer_dice"] > 0.8
  fixed = geom.enforce_topology(np.log(np.clip(probs[0], 1e-7, 1)))[0]
  assert geom.column_is_ordered(fixed).all()


def test_pretrained_explains_with_its_own_choice_and_carries_its_heldout_evidence():
  """The members explain with the method and layer of ensemble.json's settings (chosen on the
  held-out eyes of the models that stand for them; doc_tables checks it ranks first there),
  explain reads the same before loading, and cam_evidence.json is what scripts/cam_evidence.py
  writes from those models' committed 6-scan held-out runs today (doc_tables.cam_choice)."""
  with open(os.path.join(PRETRAINED, "ensemble.json")) as f:
    settings = json.load(f)["settings"]
  chosen = (settings["explain.method"], tuple(settings["explain.layers"]))
  for m in inference.load_trained(PRETRAINED).members:
    assert (m.config.explain.method, tuple(m.config.explain.layers)) == chosen
  stored = inference.stored_config(PRETRAINED).explain
  assert (stored.method, tuple(stored.layers)) == chosen
  with open(os.path.join(PRETRAINED, "cam_evidence.json")) as f:
    shipped = json.load(f)
  cwd = os.getcwd()
  try:
    os.chdir(ROOT)
    doc_tables = load_script("doc_tables")
    chosen_on = doc_tables.cam_choice(doc_tables.Sources(ROOT))
    assert load_script("cam_evidence").evidence_file(chosen_on) == shipped
    assert doc_tables.shipped_cam(doc_tables.Sources(ROOT)) == (chosen[0], ",".join(chosen[1]))
  finally:
    os.chdir(cwd)
  found = shipped["methods"][chosen[0]][",".join(chosen[1])]
  assert sum(found["passed"][1:]) >= 6 and found["similarity"] <= 0.5   # issue 30's targets
