"""The soak's run: the training loop test's (the embedded MNIST's runlocal:
20 steps, checkpoints at 10 and 20) with lock_stale_after 2 s, so that a
suspended owner can be taken over within the soak, and a one-trial sweep, so
that the same run can be driven by a sweep driver (its trial dir:
SWEEP_DIR/default)."""
from cgjax.configs import mnist_mlp


def get_config(arg=None):
  c = mnist_mlp.get_config(arg)
  c.lock_stale_after = 2.0
  return c


def get_sweep(arg=None):
  del arg
  return [{}]
