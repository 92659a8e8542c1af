"""The small CNN on the embedded MNIST; otherwise as configs/mnist_mlp.py.

arg: noise, seed, epochs, runlocal (see mnist_mlp.py).
"""
from configs import common


def get_config(arg=None):
  a = common.parse_arg(arg, noise=0.5, seed=0, epochs=30, runlocal=False)
  c = common.base_config()
  c.seed = a.seed
  c.noise.rate = a.noise
  c.model.name = 'cnn'
  c.model.kwargs = {'channels': (32, 64), 'hidden': 128}
  c.optim.lr = 0.05
  c.num_steps = a.epochs * 40
  c.probe.m = 256
  c.probe.every = 200
  c.probe.microbatch_size = 64
  if a.runlocal:
    c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 10, 5, 5, 5
    c.probe.m, c.probe.every, c.probe.num_log_spaced = 32, 5, 2
  return c
