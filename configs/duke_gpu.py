"""Our configuration for the Duke data on a GPU (literature protocol, the pretrained model):
native resolution (224-row retina band, no resize), percentile normalisation with flips, shifts
and intensity augmentation, SegNet 32..256 with index unpooling (2.3M parameters, 9 MB), batch 8,
plateau schedule and early stopping; subject-wise split, fold `data.fold` of 4."""

from configs import default


def get_config():
  c = default.get_config()
  c.data.source = "duke"
  c.data.recipe.band_height = 224
  c.model.widths = (32, 64, 128, 256)
  c.train.batch_size = 8
  c.train.num_epochs = 80
  c.train.plateau_patience = 5
  c.train.early_stopping_patience = 12
  c.train.checkpoint_every = 10
  c.train.image_summary_every = 20
  return c
