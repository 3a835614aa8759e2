"""Tests: a tiny SegNet on tiny phantom scans; seconds per run on a CPU."""

from configs import default


def get_config():
  c = default.get_config()
  c.data.synthetic.num_scans = 12
  c.data.synthetic.height = 96
  c.data.synthetic.width = 64
  c.data.synthetic.scans_per_subject = 4
  c.data.recipe.band_height = 48
  c.data.val_subjects = (3,)
  c.data.augment.max_shift = 2
  c.model.widths = (4, 8)
  c.train.batch_size = 4
  c.train.eval_batch_size = 4
  c.train.num_epochs = 3
  c.train.learning_rate = 1e-2
  c.train.image_summary_every = 10   # images after epoch 1 only: they were half a tiny run
  c.explain.layers = ("dec1_conv1",)   # the first decoder block, as dec3_conv1 in 4 levels
  c.explain.max_scans = 2
  c.explain.deletion_steps = 4
  c.benchmark.steps = 2
  c.benchmark.warmup = 1
  return c
