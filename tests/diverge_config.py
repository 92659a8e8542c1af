"""A run that diverges between log lines (lr 1e8: the loss is NaN from step 4, logged every 10
steps, a checkpoint every step, no measurements), for tests/records_test.py."""
import ml_collections

from configs import mnist_mlp


def get_config(arg=None):
  c = mnist_mlp.get_config('runlocal,width=16,depth=1')
  c.num_steps, c.batch_size, c.log_every, c.checkpoint_every = 20, 50, 10, 1
  c.keep_checkpoints = 2
  c.optim.lr = float(arg or 1e8)
  c.noise.kind = 'uniform'  # the labels this NaN at step 4 was measured on
  c.measurements = ml_collections.ConfigDict()
  return c
