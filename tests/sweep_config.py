"""A two-trial sweep of tiny runs (sklearn digits), for tests/sweep_test.py."""
from configs import mnist_mlp


def get_config(arg=None):
  del arg  # 'one' selects trials only
  c = mnist_mlp.get_config('digits,runlocal,width=16,depth=1')
  c.num_steps, c.batch_size = 12, 50
  c.log_every = c.checkpoint_every = 4
  c.measurements.eval.update(batch_size=200, every=4)
  c.measurements.probe.update(m=20, microbatch_size=20, every=4)
  return c


def get_sweep(arg=None):
  """Noise 0 and 0.5; arg 'one': noise 0 alone (a test of the driver)."""
  trials = [{'noise.rate': 0.0}, {'noise.rate': 0.5}]
  return trials[:1] if arg == 'one' else trials
