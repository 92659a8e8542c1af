"""The small CNN on the embedded MNIST; otherwise as configs/mnist_mlp.py.

arg: noise, seed, epochs, runlocal (see mnist_mlp.py).
"""
from cgjax.configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, noise=0.5, seed=0, epochs=30, runlocal=False)
  c = common.base_config()
  c.seed = a.seed
  c.noise.rate = a.noise
  c.model.name = 'cnn'
  c.model.kwargs = {'channels': (32, 64), 'hidden': 128}
  c.optim.lr = 0.05
  c.num_steps = a.epochs * 40
  c.measurements.probe.update(m=256, every=200, microbatch_size=64)
  if a.runlocal:
    c.num_steps, c.log_every, c.checkpoint_every = 10, 5, 5
    c.measurements.eval.every = 5
    c.measurements.probe.update(m=32, every=5, num_log_spaced=2)
  return c
