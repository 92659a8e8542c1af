"""Loss, top-1 and top-5 accuracy on fixed samples, as the CG authors measure.

Sets (each a fixed sample, see `pipeline.fixed_sample`; sizes in `sizes`,
0 = every candidate): `train`, training examples clean and noisy mixed;
`clean` and `noisy` training examples (`noise.noisy_means` says which are
noisy); `test`. A set without candidates (noisy at noise 0) is left out.
Metrics, under the measurement's name (`eval/...`):

  train_acc, train_loss, train_top5          against the training labels
  clean_acc, clean_loss, clean_top5
  noisy_acc_vs_noisy_label, noisy_acc_vs_clean_label (memorization and
    generalization), noisy_loss, noisy_top5_vs_{noisy,clean}_label
  test_acc, test_loss, test_top5
  validation_acc, ...  each extra test set of the data (the data set's own
                     test split when data.heldout_size holds out the test
                     split), at the size of `sizes.test`
  adjusted_overfit   train_acc - [rate / K + (1 - rate) * test_acc] (the CG
                     paper's, rate = noise.rate)

top5 only where K > 5. Each training example is evaluated once per run even
when it belongs to several sets. BatchNorm uses its running statistics.

Fields:
  batch_size   global evaluation batch (a multiple of the device count)
  sizes        {train, clean, noisy, test}: examples per set (0 = all)
"""
import contextlib
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cgjax import losses
from cgjax import measurements
from cgjax import parallel
from cgjax.data import pipeline

FIELDS = {'batch_size': 1000,
          'sizes': ml_collections.ConfigDict(
              {'train': 0, 'clean': 0, 'noisy': 0, 'test': 0})}

# Policies (cgjax.measurements): every value must stay finite (the default).
FIGURES = ('fig_accuracy', 'fig_overfit')


def headline(key: str) -> bool:
  """Accuracies and the adjusted overfit: the numbers a run is judged by."""
  return key.endswith('_acc') or '_acc_vs_' in key or key == 'adjusted_overfit'



@functools.lru_cache(maxsize=None)
def make_predict(model, num_classes: int, mesh):
  """Jitted (params, batch_stats, batch) -> per-example results, replicated
  on every device (so every process reads all of them). One per (model,
  mesh): evaluation and learning times share its compilations."""
  k = min(5, num_classes)

  def predict(params, batch_stats, batch):
    logits = model.apply({'params': params, 'batch_stats': batch_stats},
                         batch['image'], train=False)
    top = jax.lax.top_k(logits, k)[1]
    hit = lambda label: jnp.any(top == label[:, None], -1)
    return {'loss': losses.cross_entropy(logits, batch['label']),
            'pred': top[:, 0],
            'top5': hit(batch['label']),
            'top5_clean_label': hit(batch['clean_label']),
            'weight': batch['weight']}

  return jax.jit(predict, out_shardings=parallel.replicated(mesh))


def run_predict(predict, state, split, index, batch_size, mesh) -> dict:
  """Per-example results of `split`'s examples `index`, in that order."""
  batches = pipeline.padded_batches(split.subset(index), batch_size,
                                    jax.process_index(), jax.process_count())
  with contextlib.closing(batches):
    chunks = [jax.device_get(predict(state.params, state.batch_stats,
                                     parallel.to_global(batch, mesh)))
              for batch in batches]
  out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
  # Padding rows sit at the end of each process's part of a global batch;
  # the real rows keep their order.
  real = out.pop('weight') > 0
  return {k: v[real] for k, v in out.items()}


def check_sizes(name, sizes, known):
  for set_name, size in sizes.items():
    if set_name not in known:
      raise ValueError(f'measurements.{name}.sizes has no set {set_name!r}; '
                       f'sets: {", ".join(known)}')
    if size < 0:
      raise ValueError(f'measurements.{name}.sizes.{set_name} must be >= 0 '
                       f'(0 = all), got {size}')


class Measurement:

  def __init__(self, name, cfg, ctx):
    measurements.at_least(name, cfg, batch_size=1)
    parallel.check_divisible(f'measurements.{name}.batch_size',
                             cfg.batch_size, ctx.mesh)
    pools = pipeline.pools(ctx.dataset)
    check_sizes(name, cfg.sizes, pools)
    self._name, self._ctx, self._batch_size = name, ctx, cfg.batch_size
    sizes = {**cfg.sizes, **{s: cfg.sizes.test for s in ctx.dataset.extra_test}}
    self._index, self._split = {}, {}
    for set_name, size in sizes.items():
      split, candidates = pools[set_name]
      index = pipeline.fixed_sample(split, candidates, size, ctx.config.seed)
      if len(index):
        self._index[set_name], self._split[set_name] = np.sort(index), split
    self._train = [s for s in self._index
                   if self._split[s] is ctx.dataset.train]
    self._train_index = np.unique(np.concatenate(
        [self._index[s] for s in self._train])) if self._train else None
    self._predict = make_predict(ctx.model, ctx.dataset.num_classes,
                                 ctx.mesh)
    self._top5 = ctx.dataset.num_classes > 5

  def _results(self, state) -> dict:
    """{set: per-example results}, each training example evaluated once."""
    run = functools.partial(run_predict, self._predict, state,
                            batch_size=self._batch_size, mesh=self._ctx.mesh)
    out = {s: run(self._split[s], self._index[s]) for s in self._index
           if s not in self._train}
    if self._train:
      every = run(self._ctx.dataset.train, self._train_index)
      for s in self._train:
        rows = np.searchsorted(self._train_index, self._index[s])
        out[s] = {k: v[rows] for k, v in every.items()}
    return out

  def run(self, state, step):
    del step
    metrics = {}
    for set_name, r in self._results(state).items():
      split = self._split[set_name]
      index = self._index[set_name]
      label, clean = split.labels[index], split.clean_labels[index]
      acc = lambda labels: float(np.mean(r['pred'] == labels))
      top5 = {'top5': float(np.mean(r['top5'])),
              'top5_clean_label': float(np.mean(r['top5_clean_label']))}
      if set_name == 'noisy':
        values = {'acc_vs_noisy_label': acc(label),
                  'acc_vs_clean_label': acc(clean),
                  'top5_vs_noisy_label': top5['top5'],
                  'top5_vs_clean_label': top5['top5_clean_label']}
      else:
        values = {'acc': acc(label), 'top5': top5['top5']}
      values['loss'] = float(np.mean(r['loss']))
      metrics.update({f'{self._name}/{set_name}_{k}': v
                      for k, v in values.items()
                      if self._top5 or 'top5' not in k})
    train_acc = metrics.get(f'{self._name}/train_acc')
    test_acc = metrics.get(f'{self._name}/test_acc')
    if train_acc is not None and test_acc is not None:
      rate = self._ctx.config.noise.rate
      metrics[f'{self._name}/adjusted_overfit'] = train_acc - (
          rate / self._ctx.dataset.num_classes + (1 - rate) * test_acc)
    return metrics

  def summary(self, metrics):
    return ', '.join(f'{k.split("/", 1)[1]}={v:.4f}'
                     for k, v in metrics.items()
                     if k.endswith('_acc') or '_acc_vs' in k)
