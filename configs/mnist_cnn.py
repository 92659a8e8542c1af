"""The convolutional claims study on the embedded MNIST: the m-coherence
findings are about convolutional networks, so their claims are checked on
one (`python -m experiments.claims --study conv`).

A small CNN (two 3x3 conv + 2x2 max-pool stages of 16 and 32 channels, a
dense layer of 128, the head) on the 4,000 / 1,000 embedded MNIST digits,
SGD with momentum 0.9 at lr 0.02 (the m-coherence paper's optimizer by
secondary notes, unverified; at lr
0.05 without momentum 30 epochs fitted 29% of random labels), batches of
100, 50 epochs (2,000 steps): long enough that random labels are memorized
(noisy-label train accuracy >= 0.9 at noise 1: 0.97 at epoch 40, measured).
Probes by cost: m-coherence, total and per layer, from per-layer taps at
every probe (every epoch and 30 log-spaced steps, for the early transient);
cosines, stiffness, confusion and GSNR from per-example gradients at every
10th probe only.

arg (comma-separated):
  noise   label noise rate in [0, 1] (default 0.5)
  seed    run seed; seeds: with --sweep, every rate at seeds seed, seed+1, ...
  epochs  passes over the training set (default 50)
  width   channels of the first conv stage (the second has twice as many)
  runlocal  a few steps only, for a smoke test

The sweep: noise 0, 0.5 and 1 (real labels, partial noise, random labels),
label noise of kind 'permute' as the MLP study's (the CG MNIST code's).
"""
import ml_collections

from cgjax.configs import common

ARGS = dict(noise=0.5, seed=0, seeds=1, epochs=50, width=16, runlocal=False)
EPOCH = 40  # steps: 4,000 examples at batch 100


def get_config(arg=None):
  a = common.parse_arg(arg, **ARGS)
  c = common.base_config()
  c.seed = a.seed
  c.noise.rate = a.noise
  c.noise.kind = 'permute'  # as the MLP study's (the CG MNIST code's)
  c.model.name = 'cnn'
  c.model.kwargs = {'channels': (a.width, 2 * a.width), 'hidden': 128}
  c.optim.update(lr=0.02, momentum=0.9)
  c.num_steps = a.epochs * EPOCH
  c.log_every = 200
  c.checkpoint_every = 500
  c.measurements = ml_collections.ConfigDict({
      # Every epoch, as the probes: claim 3's window is the probes where
      # the noisy-label train accuracy lies in [0.2, 0.9].
      'eval': common.measurement('evaluation', every=EPOCH,
                                 num_log_spaced=10),
      'probe': common.measurement('coherence', m=256, every=EPOCH,
                                  num_log_spaced=30, microbatch_size=64,
                                  statistics='norms', all_every=10),
      'learning': common.measurement('learning_times', every=50,
                                     num_log_spaced=20),
      # 10 training batches per measurement, as the MLP study's (one batch
      # of 100 leaves f_p - null f_p in the estimator's noise).
      'shares': common.measurement('loss_shares', batches=10, every=100,
                                   num_log_spaced=30),
  })
  if a.runlocal:
    c.num_steps, c.log_every, c.checkpoint_every = 10, 5, 5
    c.measurements.eval.update(every=5, num_log_spaced=0)
    c.measurements.learning.update(every=5, num_log_spaced=0)
    c.measurements.shares.update(every=5, num_log_spaced=2)
    c.measurements.probe.update(m=32, every=5, num_log_spaced=2, all_every=2)
  return c


def get_sweep(arg=None):
  """Noise 0, 0.5, 1; with `seeds=N`, each rate at N seeds."""
  return common.noise_sweep(common.parse_arg(arg, **ARGS), (0.0, 0.5, 1.0))
