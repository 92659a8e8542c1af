"""Coherent Gradients' prescription on the embedded MNIST: memorization study.

The CG paper's winsorization experiment (Chatterjee 2020): a 3-hidden-layer ReLU
network, plain SGD (no momentum) at lr 0.1 on minibatches of 100 with 50%
label noise, trained with winsorized per-example gradients for c in
{1, 2, 4, 8} against c = 0 (plain SGD), and the follow-up's median-of-means
M3, RM3 and the RA3 control, all for the same number of examples seen.
Scaled so the whole sweep runs in under 30 minutes on 2 CPU cores: the
4,000-example embedded set, hidden layers of 128 (the paper: 256; `width`),
25 epochs = 1,000 SGD steps (the paper: 100 epochs; `epochs`), where
winsorized steps cost 20-60x a plain one on CPU (benchmarks/aggregator_cost);
the only measurement is evaluation (this study measures accuracy).

Label noise of kind 'permute', as the CG code's (each label selected with
probability `noise`, the selected labels permuted among themselves): the
MNIST config's default. c in {1, 2, 4, 8} is from secondary notes on the
paper (unverified); the code's default is `winsorize_pct=10`.

M3 here: the batch is split into k = 3 groups
whose mean gradients (at the same weights) are combined by their median; to
match the paper's M3 (three minibatches of 100 per update) its trials use
batch 300 and a third of the steps.

arg: noise (0.5), epochs (25), width (128), depth (3), seed, runlocal.

    python launch.py --config configs/mnist_winsorize.py --sweep --workdir runs/winsorize
    python -m experiments.winsorize_study runs/winsorize
"""
from cgjax.configs import common
from cgjax.configs import mnist_mlp

NUM_TRAIN = 4000


def _args(arg):
  return common.parse_arg(arg, noise=0.5, epochs=25, width=128, depth=3,
                          seed=0, runlocal=False)


def get_config(arg=None):
  a = _args(arg)
  c = mnist_mlp.get_config(f'noise={a.noise},seed={a.seed},width={a.width},'
                           f'depth={a.depth},epochs={a.epochs}')
  c.optim.update(name='sgd', lr=0.1, momentum=0.0)
  c.measurements = {'eval': common.measurement('evaluation', every=50)}
  c.log_every = 50
  c.checkpoint_every = 250
  if a.runlocal:
    c.num_steps = 12
    c.measurements.eval.every = c.log_every = c.checkpoint_every = 4
  return c


def get_sweep(arg=None):
  """Plain SGD, winsorize c = 1, 2, 4, 8, then M3, RM3, RA3."""
  steps = get_config(arg).num_steps
  trials = [{'optim.aggregator': 'mean'}]
  trials += [{'optim.aggregator': 'winsorize', 'optim.winsorize_c': c}
             for c in (1, 2, 4, 8)]
  trials.append({'optim.aggregator': 'm3', 'optim.m3_groups': 3,
                 'batch_size': 300, 'num_steps': max(steps // 3, 1)})
  trials += [{'optim.aggregator': a} for a in ('rm3', 'ra3')]
  return trials
