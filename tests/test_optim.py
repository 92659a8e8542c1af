"""Learning-rate schedules against the recursions of torch's schedulers."""
import math
import types

import numpy as np
import pytest

from cgjax import optim
from cgjax.configs import common


def _cfg(**fields):
  cfg = common.base_config().optim
  cfg.update(fields)
  return cfg


def torch_step_lr(lr, epochs, step_size, gamma):
  """StepLR stepped once per epoch: lr *= gamma at epochs step_size, 2 x
  step_size, ... (its recursive form)."""
  out = [lr]
  for e in range(1, epochs):
    out.append(out[-1] * gamma if e % step_size == 0 else out[-1])
  return out


def torch_cosine_lr(lr, t_max):
  """CosineAnnealingLR (eta_min 0) stepped once per epoch, its recursive
  form: lr_e = (1 + cos(pi e / T)) / (1 + cos(pi (e - 1) / T)) lr_{e-1}."""
  out = [lr]
  for e in range(1, t_max):
    out.append((1 + math.cos(math.pi * e / t_max))
               / (1 + math.cos(math.pi * (e - 1) / t_max)) * out[-1])
  return out


def _per_step(schedule, steps):
  return np.array([float(schedule(s)) for s in range(steps)])


def test_step_schedule_per_epoch_is_torch_step_lr():
  """The W&S ResNet-18: /10 at epochs 30 and 60 of 90, here 7 steps an
  epoch."""
  every = 7
  cfg = _cfg(schedule='step', step_boundaries=(30 / 90, 60 / 90),
             step_factor=0.1, schedule_every=every)
  got = _per_step(optim.make_schedule(cfg, 90 * every), 90 * every)
  expect = np.repeat(torch_step_lr(0.1, 90, 30, 0.1), every)
  np.testing.assert_allclose(got, expect, rtol=1e-6)


@pytest.mark.parametrize('epochs', [90, 2])
def test_the_ws_resnet18_schedule_is_step_lr_30_whatever_the_length(epochs):
  """The W&S ResNet-18 (common.weak_and_strong_optim): StepLR(30) counts
  epochs from the start, so 90 epochs decay at 30 and 60 as before, and the
  2-epoch easy/hard selection run stays at 0.1."""
  every = 7
  c = common.base_config()
  common.weak_and_strong_optim(c, types.SimpleNamespace(
      optimizer='sgd', weight_decay=0.0, model='resnet18'), every)
  got = _per_step(optim.make_schedule(c.optim, epochs * every), epochs * every)
  expect = np.repeat(torch_step_lr(0.1, epochs, 30, 0.1), every)
  np.testing.assert_allclose(got, expect, rtol=1e-6)
  if epochs == 2:
    np.testing.assert_allclose(got, 0.1, rtol=1e-6)


def test_cosine_schedule_per_epoch_is_torch_cosine_annealing():
  every = 5
  cfg = _cfg(schedule='cosine', schedule_every=every)
  got = _per_step(optim.make_schedule(cfg, 90 * every), 90 * every)
  expect = np.repeat(torch_cosine_lr(0.1, 90), every)
  np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-9)


def test_per_step_schedule_changes_within_epochs():
  got = _per_step(optim.make_schedule(_cfg(schedule='cosine'), 20), 20)
  assert len(set(got.round(9))) == 20  # a new lr every step


@pytest.mark.parametrize('fields,match', [
    ({'schedule_every': 0}, 'optim.schedule_every must be an integer >= 1, got 0'),
    ({'schedule_every': 4, 'warmup_steps': 3},
     'optim.warmup_steps=3 with optim.schedule_every=4'),
])
def test_bad_schedule_fields_are_named(fields, match):
  with pytest.raises(ValueError, match=match):
    optim.make_schedule(_cfg(**fields), 100)


def test_boundaries_that_round_to_one_epoch_both_apply():
  """30/90 and 60/90 of 2 epochs both round to epoch 1; per step at one
  step an epoch and per epoch agree."""
  cfg = _cfg(schedule='step', step_boundaries=(30 / 90, 60 / 90),
             step_factor=0.1)
  per_step = _per_step(optim.make_schedule(cfg, 2), 2)
  cfg.schedule_every = 3
  per_epoch = _per_step(optim.make_schedule(cfg, 6), 6)
  np.testing.assert_allclose(per_step, [0.1, 0.001], rtol=1e-6)
  np.testing.assert_allclose(per_epoch, np.repeat([0.1, 0.001], 3),
                             rtol=1e-6)
