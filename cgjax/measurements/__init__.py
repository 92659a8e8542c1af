"""Periodic measurements as plug-ins, chosen by module name from the config.

`config.measurements` maps a name to a ConfigDict whose `type` names a module
of this package (`evaluation`, `coherence`, `learning_times`, `loss_shares`)
or any importable module path (`'my_lab.my_measurement'`). The name is the
prefix of the measurement's metrics (`eval/test_acc`, `probe/clean/alpha`).

A measurement module defines

    FIELDS = {'field': default, ...}   # its own config fields, documented in
                                       # the module docstring
    class Measurement:
      def __init__(self, name, cfg, ctx): ...   # once, before training
      def run(self, state, step) -> dict[str, float]: ...

and optionally, on the class,

      extra_steps: set[int]                        # run there too

      def summary(self, metrics) -> str            # its progress line
      def kind(self, step) -> str                  # a step's kind of run,
                                                   # timed apart for the ETA
      def describe(self) -> str                    # a line at the start
      def state_dict(self) -> dict[str, np.ndarray]   # checkpointed with the
      def load_state_dict(self, arrays)            # train state, restored
      def finalize(self, workdir)                  # per-example files; called
                                                   # at every checkpoint too

and, on the module, its policies (each `key` relative to the measurement's
name, `test_acc` for `eval/test_acc`), which no other module second-guesses
by the measurement's name:

    def diverges(key) -> bool   # a non-finite value of `key` stops the run
                                # as diverged (default: every key's)
    def headline(key) -> bool   # a headline metric: TensorBoard's HParams
                                # columns, the end-of-run summary, the
                                # report's table (default: none)
    FIGURES = ('fig_x', ...)    # the report's figures that draw it: modules
                                # of cgjax.experiments, or module paths

`cfg` holds the schedule fields (SCHEDULE) and the module's FIELDS; `ctx` is
the `Context` below, and `state` the train state (params, batch_stats).
Constructors check their fields and raise ValueError naming the bad one:
they run before anything is written to the workdir. Every key a
measurement writes lies under its own name (`NAME/...`); names that would
share keys (`eval` and `eval/x`, or the loop's own `train`, `noise`,
`data`) are refused at start.
"""
import contextlib
import copy
import dataclasses
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from cgjax import plugins
from cgjax import stops

# When a measurement runs: step 0 and the other `steps`, every `every` steps,
# `num_log_spaced` log-spaced steps in [1, num_steps] (the early transient)
# and the last step (`at_end`).
SCHEDULE = {'type': '', 'every': 0, 'num_log_spaced': 0, 'steps': (0,),
            'at_end': True}


@dataclasses.dataclass(frozen=True)
class Context:
  """What a measurement may read; built once per run."""
  config: ml_collections.ConfigDict
  dataset: Any          # cgjax.data.Dataset
  model: Any            # the linen Module
  mesh: jax.sharding.Mesh
  loader: Any           # cgjax.data.pipeline.TrainLoader: loader.batch(step)
                        # is the process-local batch of update step + 1
  param_paths: list     # '/'-joined param leaf paths, in tree_leaves order
  group_of: Any         # param path -> layer group name
  workdir: str          # files go here, written by process 0 only
  # Stop requests (SIGTERM / SIGINT, cgjax.stops); long measurements call
  # check_stop(ctx) between chunks, so preemption never waits for them.
  stop: list = dataclasses.field(default_factory=lambda: stops.REQUESTS)


# A measurement running longer than this says so, and again at each multiple
# (a step-0 probe with statistics='all' ran 70 s silent).
STILL_RUNNING_SECONDS = 30.0


@contextlib.contextmanager
def still_running(log, what: str, seconds: float | None = None):
  """Logs `what (N s so far)` every `seconds` until the block ends."""
  seconds = seconds or STILL_RUNNING_SECONDS
  done = threading.Event()
  start = time.perf_counter()

  def beat():
    while not done.wait(seconds):
      log(f'{what} ({time.perf_counter() - start:.0f}s so far)')

  thread = threading.Thread(target=beat, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()


class Interrupted(Exception):
  """A stop request came during a measurement: it is abandoned (nothing of
  it written) and runs again at the same step after the resume."""


def check_stop(ctx: Context):
  """Raises Interrupted once the run was asked to stop."""
  if ctx.stop:
    raise Interrupted


def module(type_name: str):
  """The module of a measurement type: one of this package's, or a path."""
  return plugins.load(type_name, 'cgjax.measurements', 'measurement type',
                      list(BUILTIN))


# The key prefixes of the train loop's own metrics (train/loss, noise/...,
# data/...): no measurement may write there.
LOOP_PREFIXES = ('train', 'noise', 'data')


def check_names(names):
  """Refuses names whose keys would collide: one is a path prefix of
  another (`eval` and `eval/x`), or a prefix the train loop writes."""
  names = sorted(names)
  for name in names:
    clash = [n for n in names if n != name and n.startswith(name + '/')]
    clash += [p for p in LOOP_PREFIXES if name == p or name.startswith(p + '/')]
    if clash:
      raise ValueError(f'measurements {name!r} and {clash[0]!r} would write '
                       f'the same keys ({name}/...): rename one')


def _decide(mod, what: str, key: str, default: bool) -> bool:
  """A measurement module's policy `what` for `key` (relative to its name)."""
  decide = getattr(mod, what, None)
  return default if decide is None else bool(decide(key))


def headline_keys(measurement_configs: dict, keys) -> list[str]:
  """The keys among `keys` that their measurement declares headline metrics
  (`measurement_configs`: config.measurements, or config.json's)."""
  out = []
  for name, cfg in sorted(measurement_configs.items()):
    mod = module(cfg['type'])
    out += [k for k in sorted(keys) if k.startswith(name + '/')
            and _decide(mod, 'headline', k[len(name) + 1:], False)]
  return out


def figures(measurement_configs: dict) -> list[str]:
  """The figure modules that the measurements declare, in their order."""
  out = []
  for _, cfg in sorted(measurement_configs.items()):
    out += [f for f in getattr(module(cfg['type']), 'FIGURES',
                               ()) if f not in out]
  return out


BUILTIN = ('evaluation', 'coherence', 'learning_times', 'loss_shares',
           'tracked_weights')


def spec(type_name: str, **fields) -> ml_collections.ConfigDict:
  """A measurement's config: schedule and module defaults, then `fields`."""
  cfg = copy.deepcopy({**SCHEDULE, **module(type_name).FIELDS,
                       'type': type_name})
  unknown = set(fields) - set(cfg)
  if unknown:
    raise ValueError(f'measurement {type_name!r} has no field(s) '
                     f'{sorted(unknown)}; fields: {", ".join(sorted(cfg))}')
  cfg.update(fields)
  return ml_collections.ConfigDict(cfg)


# Schedules are sets of the measured steps (never of all steps); more than
# this many steps of one measurement is refused as a config error (a set of
# 10^6 steps takes ~50 MB and ~1 s to build; a measured step costs far more).
MAX_SCHEDULED_STEPS = 1_000_000


def count_steps(cfg, num_steps: int) -> int:
  """How many steps schedule_steps gives at most, without building it."""
  return (len(cfg.steps) + int(cfg.at_end) + cfg.num_log_spaced
          + (num_steps // cfg.every if cfg.every else 0))


def schedule_steps(cfg, num_steps: int) -> set[int]:
  """The steps in [0, num_steps] at which a measurement runs."""
  steps = {s for s in cfg.steps if 0 <= s <= num_steps}
  if cfg.at_end:
    steps.add(num_steps)
  if cfg.num_log_spaced:
    steps |= set(np.unique(np.round(np.logspace(
        0, np.log10(max(num_steps, 1)), cfg.num_log_spaced))).astype(int)
                 .tolist())
  if cfg.every:
    steps |= set(range(cfg.every, num_steps + 1, cfg.every))
  return steps


def check(name: str, cfg, num_steps: int | None = None):
  """Schedule fields in range and no field the type does not know; with
  `num_steps`, at most MAX_SCHEDULED_STEPS steps."""
  known = {**SCHEDULE, **module(cfg.type).FIELDS}
  unknown = set(cfg.keys()) - set(known)
  if unknown:
    raise ValueError(f'measurements.{name} ({cfg.type}) has no field(s) '
                     f'{sorted(unknown)}; fields: {", ".join(sorted(known))}')
  at_least(name, cfg, every=0, num_log_spaced=0)
  steps = cfg.steps if isinstance(cfg.steps, (list, tuple)) else [cfg.steps]
  bad = [s for s in steps if isinstance(s, bool) or not isinstance(s, int)
         or s < 0]
  if bad:
    raise ValueError(f'measurements.{name}.steps must be integers >= 0, got '
                     f'{", ".join(map(repr, bad))} in {cfg.steps!r}')
  if num_steps is not None and count_steps(cfg, num_steps) > (
      MAX_SCHEDULED_STEPS):
    raise ValueError(
        f'measurements.{name} would run at about '
        f'{count_steps(cfg, num_steps):.3g} steps (every={cfg.every} up to '
        f'num_steps={num_steps}); at most {MAX_SCHEDULED_STEPS:,} are '
        f'supported: raise measurements.{name}.every')


def at_least(name: str, cfg, **lows):
  """Raises naming `measurements.{name}.{field}` where cfg.field < low."""
  for field, low in lows.items():
    if cfg[field] < low:
      raise ValueError(f'measurements.{name}.{field} must be >= {low}, got '
                       f'{cfg[field]}')


class Measurements:
  """Every configured measurement, run when its schedule says."""

  def __init__(self, config, ctx: Context):
    self._items, self._modules = [], {}
    self._configs = config.measurements
    check_names(config.measurements)
    for name, cfg in sorted(config.measurements.items()):
      check(name, cfg)
      self._modules[name] = module(cfg.type)
      instance = self._modules[name].Measurement(name, cfg, ctx)
      steps = schedule_steps(cfg, config.num_steps)
      steps |= set(getattr(instance, 'extra_steps', ()))
      self._items.append((name, instance, steps))

  def describe(self) -> list[str]:
    """One line per measurement: its type, what it measures, how often."""
    return [f'measurement {name} ({type(item).__module__.rsplit(".", 1)[-1]}'
            f', {len(steps)} steps)'
            + (f': {item.describe()}' if hasattr(item, 'describe') else '')
            for name, item, steps in self._items]

  def _phase(self, name, item, step) -> str:
    kind = item.kind(step) if hasattr(item, 'kind') else ''
    return f'{name}/{kind}' if kind else name

  def schedules(self) -> dict[str, set[int]]:
    """{phase: its steps}: a measurement's name, or name/kind where it says
    a step's kind of run (`kind(step)`: probe/all costs ~100x probe)."""
    out = {}
    for name, item, steps in self._items:
      for step in steps:
        out.setdefault(self._phase(name, item, step), set()).add(step)
    return out

  def due(self, step: int) -> bool:
    return any(step in steps for _, _, steps in self._items)

  def run(self, state, step: int, log=print,
          timed=lambda name: contextlib.nullcontext(),
          every: bool = False) -> dict[str, float]:
    """Metrics of every measurement due at `step` (`every`: of all of them,
    due or not, as on a checkpoint); logs their summaries. Each runs inside
    `timed(name)` (the run's Progress books its time)."""
    out = {}
    for name, item, steps in self._items:
      if step not in steps and not every:
        continue
      with timed(self._phase(name, item, step)), still_running(
          log, f'step {step}: {name} still measuring'):
        metrics = item.run(state, step)
      stray = [k for k in metrics if not k.startswith(name + '/')]
      if stray:
        raise ValueError(f'measurement {name} ({type(item).__module__}) '
                         f'wrote {stray[0]!r}, outside its keys {name}/...')
      out.update(metrics)
      if metrics and hasattr(item, 'summary'):
        log(f'step {step}: {item.summary(metrics)}')
    return out

  def diverged(self, scalars: dict) -> list[str]:
    """The keys of `scalars` whose non-finite value means divergence, as
    their measurement declares (`diverges`)."""
    return [k for name, item, _ in self._items for k, v in scalars.items()
            if k.startswith(name + '/') and not np.isfinite(v)
            and _decide(self._modules[name], 'diverges', k[len(name) + 1:],
                        True)]

  def headline(self, scalars: dict) -> list[str]:
    """The keys of `scalars` that their measurement calls headline."""
    return headline_keys(self._configs, scalars)

  def state_dict(self) -> dict:
    return {name: item.state_dict() for name, item, _ in self._items
            if hasattr(item, 'state_dict')}

  def load_state_dict(self, arrays: dict):
    for name, item, _ in self._items:
      if hasattr(item, 'load_state_dict'):
        item.load_state_dict(arrays[name])

  def finalize(self, workdir: str):
    for _, item, _ in self._items:
      if hasattr(item, 'finalize'):
        item.finalize(workdir)
