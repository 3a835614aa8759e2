"""Our default for the Duke data on 2 CPU cores: native resolution (224-row retina band, no
resize), percentile normalisation with intensity augmentation, SegNet 16..128 with index
unpooling, subject-wise split (fold `data.fold` of 4 over subjects 1-8)."""

from configs import default


def get_config():
  c = default.get_config()
  c.data.source = "duke"
  c.data.recipe.band_height = 224
  c.model.widths = (16, 32, 64, 128)
  c.train.batch_size = 8
  c.train.num_epochs = 40
  c.train.plateau_patience = 4
  c.train.early_stopping_patience = 10
  return c
