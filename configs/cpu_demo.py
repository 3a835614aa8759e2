"""A complete run on the built-in phantom in a few minutes on 2 CPU cores (the README's first
command): small SegNet (8..64), 320 x 256 phantom scans (128-row retina band) at native resolution."""

from configs import default


def get_config():
  c = default.get_config()
  c.data.synthetic.num_scans = 48
  c.data.synthetic.height = 320
  c.data.synthetic.width = 256
  c.data.synthetic.scans_per_subject = 8
  c.data.recipe.band_height = 128
  c.data.val_subjects = (6,)
  c.model.widths = (8, 16, 32, 64)
  c.train.batch_size = 4
  c.train.eval_batch_size = 8
  c.train.num_epochs = 24
  c.train.learning_rate = 3e-3
  c.train.plateau_patience = 3
  c.train.early_stopping_patience = 6
  c.train.image_summary_every = 4
  c.explain.max_scans = 2
  return c
