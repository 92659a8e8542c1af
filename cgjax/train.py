"""Pure train/eval/probe steps and the training loop.

Loop per update: one jitted `train_step(state, batch) -> (state, metrics)`
over the 'data' mesh; at configured steps, evaluation over the whole train and
test splits (accuracy split by clean/noisy), m-coherence probes on fixed sets
of clean, noisy and test examples, and orbax checkpoints. A relaunch with the
same workdir resumes from the last checkpoint and reproduces the
uninterrupted run (bitwise on CPU).
"""
import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from cgjax import aggregators
from cgjax import coherence
from cgjax import data as data_lib
from cgjax import models
from cgjax import optim
from cgjax import parallel
from cgjax import workdir as workdir_lib
from cgjax.data import noise as noise_lib
from cgjax.data import pipeline


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels)


class TrainState(train_state.TrainState):
  """Adds BatchNorm running statistics ({} for models without BN)."""
  batch_stats: Any = None


def make_train_step(model, optim_cfg, mesh):
  """(state, batch) -> (state, metrics); mean loss over weight-1 rows.

  BatchNorm normalizes with the statistics of the global batch (the step is
  jitted over the whole mesh) and updates the running averages. The gradient
  is combined as `optim_cfg.aggregator` says (cgjax/aggregators.py).
  """

  def train_step(state, batch):
    def loss_fn(params, batch):
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats},
          batch['image'], train=True, mutable=['batch_stats'])
      losses = cross_entropy(logits, batch['label'])
      loss = jnp.sum(losses * batch['weight']) / jnp.sum(batch['weight'])
      return loss, updates['batch_stats']

    def per_example_loss(params, example):  # models without BatchNorm only
      logits = model.apply({'params': params}, example['image'][None],
                           train=True)[0]
      return cross_entropy(logits, example['label'])

    gradient_fn = aggregators.make_gradient_fn(optim_cfg, loss_fn,
                                               per_example_loss, mesh)
    loss, grads, batch_stats = gradient_fn(state.params, batch)
    if batch_stats is None:
      batch_stats = state.batch_stats
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, {'loss': loss}

  return train_step


def make_eval_step(model):
  """(params, batch_stats, batch) -> counts and loss sums, clean / noisy."""

  def eval_step(params, batch_stats, batch):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         batch['image'], train=False)
    pred = jnp.argmax(logits, -1)
    w = batch['weight']
    noisy = batch['is_noisy'].astype(jnp.float32) * w
    clean = w - noisy
    hit = (pred == batch['label']).astype(jnp.float32)
    hit_clean_label = (pred == batch['clean_label']).astype(jnp.float32)
    return {
        'n': jnp.sum(w), 'n_clean': jnp.sum(clean), 'n_noisy': jnp.sum(noisy),
        'correct': jnp.sum(hit * w),
        'correct_clean': jnp.sum(hit * clean),
        'noisy_correct_vs_noisy': jnp.sum(hit * noisy),
        'noisy_correct_vs_clean': jnp.sum(hit_clean_label * noisy),
        'loss': jnp.sum(cross_entropy(logits, batch['label']) * w),
    }

  return eval_step


def make_per_example_loss(model):
  """Training loss of one example (no weight decay), for coherence.

  BatchNorm uses the running statistics (eval mode), so one example's
  gradient does not depend on which other examples share its batch.
  """

  def per_example_loss(params, example, batch_stats):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         example['image'][None], train=False)[0]
    return cross_entropy(logits, example['label'])

  return per_example_loss


def probe_steps(num_steps: int, every: int, num_log_spaced: int) -> set[int]:
  """Step 0, num_log_spaced log-spaced steps in [1, num_steps], every `every`."""
  steps = {0, num_steps}
  if num_log_spaced:
    steps |= set(np.unique(np.round(np.logspace(
        0, np.log10(max(num_steps, 1)), num_log_spaced)).astype(int)).tolist())
  if every:
    steps |= set(range(every, num_steps + 1, every))
  return steps


def validate(config):
  """Cheap checks of names and ranges, before any data is read."""
  noise_lib.check_rate(config.noise.rate, 'noise.rate')
  data_lib.check_name(config.data.name)
  models.check_name(config.model.name)
  optim.make_optimizer(config.optim, config.num_steps)
  aggregators.check(config.optim, config.batch_size)
  if config.probe.statistics not in coherence.STATISTICS:
    raise ValueError(f'probe.statistics must be one of {coherence.STATISTICS}'
                     f', got {config.probe.statistics!r}')
  minimum = {'num_steps': 1, 'batch_size': 1, 'log_every': 1, 'eval_every': 1,
             'checkpoint_every': 1, 'keep_checkpoints': 1, 'data.image_size': 1,
             'data.prefetch': 0, 'eval.batch_size': 1,
             'eval.train_examples': 0, 'probe.m': 1,
             'probe.microbatch_size': 1, 'probe.every': 0,
             'probe.num_log_spaced': 0}
  for field, low in minimum.items():
    node, *rest = field.split('.')
    value = config[node][rest[0]] if rest else config[node]
    if value < low:
      raise ValueError(f'{field} must be >= {low}, got {value}')


@dataclasses.dataclass
class Probe:
  """One fixed probe set as sharded global arrays, padded to the microbatch."""
  examples: dict
  weights: jax.Array
  microbatch_size: int  # per device


def _make_probe(split, index, config, mesh) -> Probe:
  micro = min(config.probe.microbatch_size, len(index))
  micro = -(-micro // mesh.size) * mesh.size  # round up to the device count
  padded = -(-len(index) // micro) * micro
  rows = pipeline.pad_batch(split, index, padded)
  local = padded // jax.process_count()
  lo = jax.process_index() * local
  rows = {k: v[lo:lo + local] for k, v in rows.items()}
  arrays = parallel.to_global(rows, mesh)
  weights = arrays.pop('weight')
  return Probe({k: arrays[k] for k in ('image', 'label')}, weights,
               micro // mesh.size)


def _evaluate(eval_step, state, split, config, mesh) -> dict:
  totals = {}
  for batch in pipeline.padded_batches(split, config.eval.batch_size,
                                       jax.process_index(),
                                       jax.process_count()):
    out = jax.device_get(eval_step(state.params, state.batch_stats,
                                   parallel.to_global(batch, mesh)))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  return totals


def evaluate(eval_step, state, dataset, config, mesh) -> dict:
  train = dataset.train
  if config.eval.train_examples and config.eval.train_examples < len(train):
    # A fixed random subset: split order can be sorted by class.
    rng = np.random.default_rng([config.seed, 11])
    train = train.subset(np.sort(rng.choice(len(train),
                                            config.eval.train_examples,
                                            replace=False)))
  tr = _evaluate(eval_step, state, train, config, mesh)
  te = _evaluate(eval_step, state, dataset.test, config, mesh)
  div = lambda a, b: a / b if b else float('nan')
  train_acc, test_acc = div(tr['correct'], tr['n']), div(te['correct'], te['n'])
  rate = config.noise.rate
  return {
      'eval/train_loss': div(tr['loss'], tr['n']),
      'eval/train_acc': train_acc,
      'eval/clean_acc': div(tr['correct_clean'], tr['n_clean']),
      'eval/noisy_acc_vs_noisy_label': div(tr['noisy_correct_vs_noisy'],
                                           tr['n_noisy']),
      'eval/noisy_acc_vs_clean_label': div(tr['noisy_correct_vs_clean'],
                                           tr['n_noisy']),
      'eval/test_loss': div(te['loss'], te['n']),
      'eval/test_acc': test_acc,
      'eval/adjusted_overfit': train_acc - (rate / dataset.num_classes
                                            + (1 - rate) * test_acc),
  }


def run_probes(probe_fn, state, probes: dict[str, Probe], paths: list[str],
               group_of) -> dict:
  out = {}
  for name, probe in probes.items():
    stats = probe_fn(state.params, probe.examples, probe.weights,
                     probe.examples['label'], (state.batch_stats,),
                     microbatch_size=probe.microbatch_size)
    out.update(coherence.flatten(coherence.summarize(stats, paths, group_of),
                                 f'probe/{name}/'))
  return out


def _log(*args):
  if workdir_lib.is_writer():
    print('[cgjax]', *args, flush=True)


def _eta(seconds):
  return time.strftime('%H:%M:%S', time.gmtime(max(seconds, 0)))


def train_and_evaluate(config, workdir: str) -> dict:
  """Runs (or resumes) one training run; returns the last value of each metric."""
  validate(config)
  mesh = parallel.make_mesh()
  parallel.check_divisible('batch_size', config.batch_size, mesh)
  parallel.check_divisible('eval.batch_size', config.eval.batch_size, mesh)
  dataset = data_lib.load(config.data, config.noise)
  loader = pipeline.TrainLoader(dataset.train, config.batch_size, config.seed,
                                jax.process_index(), jax.process_count())
  probe_index = pipeline.select_probes(dataset.train, dataset.test,
                                       config.probe.m, config.seed,
                                       tuple(config.probe.sets))
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  tx = optim.make_optimizer(config.optim, config.num_steps)

  resuming = workdir_lib.prepare(workdir, config)  # nothing written before
  try:
    return _run(config, workdir, mesh, dataset, loader, probe_index, model,
                tx, resuming)
  except Diverged:
    raise
  except BaseException as err:
    workdir_lib.set_status(workdir, 'failed', -1, f'{type(err).__name__}: {err}')
    raise


class Diverged(FloatingPointError):
  """The training loss became NaN or infinite."""


def _run(config, workdir, mesh, dataset, loader, probe_index, model, tx,
         resuming):
  repl = parallel.replicated(mesh)
  sample = dataset.train.images[:1]

  @functools.partial(jax.jit, out_shardings=repl)
  def init_state(rng):
    variables = model.init(rng, sample, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'],
                             batch_stats=variables.get('batch_stats', {}),
                             tx=tx)

  state = init_state(jax.random.key(config.seed))
  checkpointer = workdir_lib.Checkpointer(workdir, config.keep_checkpoints)
  start = checkpointer.latest_step() if resuming else None
  if start is not None:
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state)
    state, data_state = checkpointer.restore(start, abstract)
    assert data_state['next_step'] == int(state.step) == start, data_state
    _log(f'resuming {workdir} from step {start}')
  # Losses of the log interval in progress; kept in checkpoints so that a
  # resumed run logs the same interval means.
  losses = [np.float32(x) for x in (data_state['interval_losses']
                                    if start is not None else [])]
  writer = workdir_lib.MetricWriter(workdir, -1 if start is None else start)
  start = start or 0
  workdir_lib.set_status(workdir, 'running', start)

  if (config.optim.aggregator in aggregators.PER_EXAMPLE
      and jax.tree.leaves(state.batch_stats)):
    raise ValueError(f'optim.aggregator={config.optim.aggregator!r} needs '
                     'per-example gradients, which BatchNorm models do not '
                     f'have; use m3 or rm3 with model {config.model.name!r}')
  train_step = jax.jit(make_train_step(model, config.optim, mesh),
                       donate_argnums=0,
                       in_shardings=(repl, parallel.data_sharded(mesh)),
                       out_shardings=(repl, repl))
  eval_step = jax.jit(make_eval_step(model), out_shardings=repl)
  probe_fn = functools.partial(coherence.sharded_coherence_stats,
                               make_per_example_loss(model), mesh,
                               statistics=config.probe.statistics)
  probes = {name: _make_probe(dataset.train if name != 'test' else dataset.test,
                              index, config, mesh)
            for name, index in probe_index.items()}
  split_of = lambda name: dataset.test if name == 'test' else dataset.train
  workdir_lib.write_json(workdir, 'probe_ids.json', {
      name: split_of(name).keys[index].tolist()
      for name, index in probe_index.items()})
  paths = coherence.leaf_paths(state.params)
  group_of = models.layer_group_fn(config.model.name)
  schedule = optim.make_schedule(config.optim, config.num_steps)
  probe_at = probe_steps(config.num_steps, config.probe.every,
                         config.probe.num_log_spaced)
  last = {}

  def measure(step, state):
    scalars = {}
    if step % config.eval_every == 0 or step == config.num_steps:
      scalars.update(evaluate(eval_step, state, dataset, config, mesh))
      _log(f'step {step}: ' + ', '.join(
          f'{k[5:]}={v:.4f}' for k, v in scalars.items()
          if k.endswith('acc') or 'acc_vs' in k))
    if step in probe_at and probes:
      p = run_probes(probe_fn, state, probes, paths, group_of)
      scalars.update(p)
      _log(f'step {step}: m-coherence ' + ', '.join(
          f'{n}={p[f"probe/{n}/m_coherence"]:.2f}' for n in probes))
    writer.write(step, scalars)
    last.update(scalars)

  if start == 0:
    noise = dataset.noise
    _log(f'{dataset.name}: {len(dataset.train)} train / {len(dataset.test)} '
         f'test examples; noise {config.noise.kind} rate {config.noise.rate}: '
         f'{noise.num_selected} selected, {noise.num_changed} labels changed; '
         f'probes {({n: len(i) for n, i in probe_index.items()})}; '
         f'{mesh.size} device(s), {jax.process_count()} process(es)')
    writer.write(0, {'noise/num_selected': noise.num_selected,
                     'noise/num_changed': noise.num_changed})
    measure(0, state)

  t0, t0_step = time.perf_counter(), start
  batches = pipeline.prefetch(
      lambda step: parallel.to_global(loader.batch(step - 1), mesh),
      range(start + 1, config.num_steps + 1), config.data.prefetch)
  for step, batch in zip(range(start + 1, config.num_steps + 1), batches):
    state, metrics = train_step(state, batch)
    losses.append(metrics['loss'])
    if step % config.log_every == 0 or step == config.num_steps:
      loss = float(np.mean(jax.device_get(losses)))
      losses = []
      rate = (step - t0_step) / (time.perf_counter() - t0)
      if not np.isfinite(loss):
        workdir_lib.set_status(workdir, 'diverged', step, f'loss {loss}')
        checkpointer.close()
        writer.close()
        raise Diverged(f'training diverged at step {step}: loss {loss}; '
                       f'lower optim.lr (now {config.optim.lr})')
      writer.write(step, {'train/loss': loss, 'train/steps_per_sec': rate,
                          'train/lr': float(schedule(step - 1))})
      _log(f'step {step}/{config.num_steps} ({100 * step // config.num_steps}%)'
           f' | loss {loss:.4f} | {rate:.1f} steps/s | '
           f'ETA {_eta((config.num_steps - step) / rate)}')
      t0, t0_step = time.perf_counter(), step
    measure(step, state)
    if step % config.checkpoint_every == 0 or step == config.num_steps:
      checkpointer.save(step, state, {
          'next_step': step,
          'interval_losses': [float(x) for x in jax.device_get(losses)]})
  checkpointer.close()
  writer.close()
  workdir_lib.set_status(workdir, 'done', config.num_steps)
  if start == config.num_steps and workdir_lib.is_writer():
    _log(f'{workdir} was already complete')
    return workdir_lib.latest_values(workdir)
  return last
