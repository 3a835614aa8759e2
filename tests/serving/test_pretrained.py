"""The committed pretrained/ workdir loads and segments scans."""

import os

import jax
import numpy as np

from octseg_jax.modes import evaluate
from octseg_jax.serving import inference
from octseg_jax.geometry import boundaries as geom
from octseg_jax.data import duke, synthetic
from tests.conftest import DUKE_DIR, ROOT, needs_duke

PRETRAINED = os.path.join(ROOT, "pretrained")


def test_pretrained_loads_and_predicts_any_size():
  trained = inference.load_trained(PRETRAINED)
  assert tuple(trained.config.model.widths) == (32, 64, 128, 256)
  n_params = sum(np.size(p) for p in jax.tree.leaves(trained.variables["params"]))
  assert 2.0e6 < n_params < 2.6e6
  image = synthetic.generate(1, 300, 210, seed=3).images[0]
  probs = inference.predict_probs(trained, [image])[0]
  assert probs.shape == (300, 210, 8)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)


@needs_duke
def test_pretrained_segments_real_scans_it_was_trained_on():
  # A fit check, not a generalisation claim: subjects 1-8 were all in its training data.
  trained = inference.load_trained(PRETRAINED)
  scans = duke.load_npz(os.path.join(DUKE_DIR, "subject_03.npz")).subset([0, 5])
  probs = inference.predict_probs(trained, list(scans.images))
  result = evaluate.score(probs, list(scans.masks), scans.subjects, 3.87)
  assert result["raw"]["literature"]["mean_layer_dice"] > 0.8
  fixed = geom.enforce_topology(np.log(np.clip(probs[0], 1e-7, 1)))[0]
  assert geom.column_is_ordered(fixed).all()
