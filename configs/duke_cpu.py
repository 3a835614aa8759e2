"""Our configuration for the Duke data on 2 CPU cores: configs/duke_gpu.py with a narrower
SegNet (16..128, 0.59M parameters), 40 epochs, shorter patience, and a resumable checkpoint
every epoch (an epoch takes about 50 s here)."""

from configs import duke_gpu


def get_config():
  c = duke_gpu.get_config()
  c.model.widths = (16, 32, 64, 128)
  c.train.num_epochs = 40
  c.train.plateau_patience = 4
  c.train.early_stopping_patience = 10
  c.train.checkpoint_every = 1
  c.train.image_summary_every = 5
  return c
