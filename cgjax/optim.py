"""Optimizers and learning-rate schedules built from `config.optim`.

Fields (documented one by one in configs/common.py and docs/config.md):
  name: 'sgd' | 'adam' | 'adamw'
  lr, momentum (sgd; 0 = vanilla SGD), nesterov (sgd), b1, b2 (adam/adamw)
  weight_decay: sgd/adam add weight_decay * w to the gradient (coupled L2);
    adamw decays decoupled from the adaptive step
  schedule: 'constant' | 'cosine' | 'step' | 'linear'
  warmup_steps: linear warm-up from 0 before any schedule
  step_boundaries: fractions of training at which 'step' multiplies the lr
    by step_factor
  step_size: 'step' every step_size units instead (epochs with
    schedule_every, else steps), counted from the start whatever the run's
    length: torch's StepLR(step_size); 0 = use step_boundaries
  schedule_every: the lr changes every N steps only (N = steps per epoch:
    torch's schedulers stepped once per epoch, as the Weak-and-Strong trainer
    does); 1 = every step
  rm3_warmup: 'skip' (the authors' RM3 / RA3: no update until a third
    gradient has been seen) or 'repeat' (the first gradient fills the
    buffer, updates from step 0)
  aggregator, winsorize_c, m3_groups: see cgjax/aggregators.py
"""
import math

import optax

from cgjax import aggregators

OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'cosine', 'step', 'linear')


def _check_ranges(cfg):
  """Raises ValueError naming the first out-of-range `optim` field."""
  finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)
  checks = [
      ('lr', finite(cfg.lr) and cfg.lr > 0, 'a finite number > 0'),
      ('momentum', finite(cfg.momentum) and 0 <= cfg.momentum < 1,
       'in [0, 1)'),
      ('b1', finite(cfg.b1) and 0 <= cfg.b1 < 1, 'in [0, 1)'),
      ('b2', finite(cfg.b2) and 0 <= cfg.b2 < 1, 'in [0, 1)'),
      ('weight_decay', finite(cfg.weight_decay) and cfg.weight_decay >= 0,
       'a finite number >= 0'),
      ('warmup_steps', cfg.warmup_steps >= 0, '>= 0'),
      ('step_factor', finite(cfg.step_factor) and cfg.step_factor > 0,
       'a finite number > 0'),
      ('schedule_every', isinstance(cfg.get('schedule_every', 1), int)
       and cfg.get('schedule_every', 1) >= 1, 'an integer >= 1'),
      ('step_size', isinstance(cfg.get('step_size', 0), int)
       and cfg.get('step_size', 0) >= 0, 'an integer >= 0'),
  ]
  for field, ok, want in checks:
    if not ok:
      raise ValueError(f'optim.{field} must be {want}, got {cfg[field]!r}')
  bounds = list(cfg.step_boundaries)
  if (any(not finite(b) or not 0 < b < 1 for b in bounds)
      or bounds != sorted(set(bounds))):
    raise ValueError('optim.step_boundaries must be fractions of training in '
                     f'(0, 1), strictly increasing, got {tuple(bounds)}')


def make_schedule(cfg, num_steps: int) -> optax.Schedule:
  """The lr by update count. With `schedule_every` = N > 1 it is constant
  over each block of N steps, the lr of block floor(count / N) of
  num_steps // N, as torch's schedulers stepped once per epoch give it:
  StepLR's factor from the first epoch at or past each boundary,
  CosineAnnealingLR's lr (1 + cos(pi e / epochs)) / 2, a linear decay to 0."""
  _check_ranges(cfg)
  if cfg.schedule not in SCHEDULES:
    raise ValueError(f'unknown optim.schedule {cfg.schedule!r}; '
                     f'choose from {SCHEDULES}')
  warmup = int(cfg.warmup_steps)
  every = cfg.get('schedule_every', 1)
  if every > 1:
    if warmup:
      raise ValueError(f'optim.warmup_steps={warmup} with optim.schedule_'
                       f'every={every}: a warm-up is per step; use one or '
                       'the other')
    per_epoch = _decay(cfg, max(num_steps // every, 1))
    return lambda count: per_epoch(count // every)
  main = _decay(cfg, num_steps, warmup)
  if not warmup:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.lr, warmup), main], [warmup])


def _decay(cfg, units: int, warmup: int = 0) -> optax.Schedule:
  """`cfg.schedule` over `units` (steps or epochs), counted from the end of
  a warm-up of `warmup` units. 'step': each boundary fraction of `units`
  rounded to a whole unit (so a schedule over epochs is the same at 1 step
  an epoch as per step; optax scales from count >= boundary on, as StepLR),
  factors multiplied where two fractions round to one unit."""
  length = max(units - warmup, 1)
  if cfg.schedule == 'constant':
    return optax.constant_schedule(cfg.lr)
  if cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(cfg.lr, length)
  if cfg.schedule == 'linear':
    return optax.linear_schedule(cfg.lr, 0.0, length)
  if cfg.get('step_size', 0):  # StepLR: absolute units, not fractions (a
    # 2-epoch run of a 90-epoch recipe keeps its lr, as the authors' does)
    return optax.exponential_decay(cfg.lr, cfg.step_size, cfg.step_factor,
                                   staircase=True)
  boundaries = {}
  for b in cfg.step_boundaries:
    at = round(b * units) - warmup
    boundaries[at] = boundaries.get(at, 1.0) * cfg.step_factor
  return optax.piecewise_constant_schedule(cfg.lr, boundaries)


def make_optimizer(cfg, num_steps: int) -> optax.GradientTransformation:
  """Weight decay (sgd/adam), then rm3/ra3 if chosen, then the optimizer."""
  if cfg.name not in OPTIMIZERS:
    raise ValueError(f'unknown optimizer {cfg.name!r}; choose from {OPTIMIZERS}')
  aggregators.check(cfg)
  lr = make_schedule(cfg, num_steps)
  if cfg.name == 'adamw':
    opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)
  elif cfg.name == 'sgd':
    opt = optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
  else:
    opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
  stages = [opt]
  running = aggregators.transformation(cfg)
  if running is not None:
    stages.insert(0, running)
  if cfg.weight_decay and cfg.name != 'adamw':
    stages.insert(0, optax.add_decayed_weights(cfg.weight_decay))
  return optax.chain(*stages) if len(stages) > 1 else opt
