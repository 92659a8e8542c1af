"""Checks that need a fresh process: 8 fake CPU devices (XLA_FLAGS set by
conftest.run_python) or a jax.distributed group (conftest.run_processes).

    python -m tests.sharded_checks CHECK [ARGS]

CHECK: streamed_probes (test_coherence.py), aggregators
(test_aggregators.py), layer_taps (test_layer_norms.py), noise_assignment
DATA_DIR OUT_DIR (imagenet_test.py). Each prints OK when it holds.
killed_while_decoding DATA_DIR (imagenet_test.py) kills itself instead.
"""
import json
import multiprocessing
import os
import signal
import sys

import jax
import ml_collections
import numpy as np

from cgjax import aggregators as aggregators_lib
from cgjax import coherence
from cgjax import data as data_lib
from cgjax import losses
from cgjax import parallel
from cgjax.data import pipeline
from cgjax.models import cnn
from cgjax.models import mlp
from tests.conftest import random_variables

# Stiffness pairs lie inside microbatches, which differ between layouts;
# every all-pairs metric must agree.
# rho's interval comes from a stream's chunks (none in one resident pass).
ALL_PAIRS = ('m_coherence', 'rho', 'sum_of_sq_norms', 'sq_norm_of_sum',
             'mean_loss', 'avg_cosine', 'gsnr', 'loss', 'grad_norm',
             'per_group', 'per_layer')
CHUNKED = ('rho_low', 'rho_high')


def _assert_close(got, want):
  drop = lambda tree: {k: drop(v) if isinstance(v, dict) else v
                       for k, v in tree.items() if k not in CHUNKED}
  for k in ALL_PAIRS:
    pick = lambda tree: drop(tree[k]) if isinstance(tree[k], dict) else tree[k]
    np.testing.assert_allclose(jax.tree.leaves(pick(got)),
                               jax.tree.leaves(pick(want)),
                               rtol=1e-4, atol=1e-7, err_msg=k)


def streamed_probes():
  """Streamed probe statistics on 8 devices equal the one-device pass."""
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  # BatchNorm's sharded per-example path: test_layer_norms'
  # test_sharded_fast_path_equals_one_device_vmap_path.
  for model in (cnn.Model(num_classes=3, channels=(4, 8), hidden=8),):
    x = rng.integers(0, 256, (20, 8, 8, 3)).astype(np.uint8)
    y = rng.integers(0, 3, 20).astype(np.int32)
    params, stats = random_variables(model, x[:1])
    loss = losses.make_per_example_loss(model)
    paths = coherence.leaf_paths(params)
    one = coherence.summarize(coherence.coherence_stats(
        loss, params, {'image': x, 'label': y}, None, y, (stats,)), paths)
    # Streamed: 3 chunks of one example per device, the last half padding.
    chunks = []
    for start in (0, 8, 16):
      n = min(8, 20 - start)
      pad = lambda a: np.concatenate([a[start:start + n],
                                      np.repeat(a[:1], 8 - n, 0)])
      chunk = parallel.to_global({
          'image': pad(x), 'label': pad(y),
          'w': (np.arange(8) < n).astype(np.float32)}, mesh)
      chunks.append(({'image': chunk['image'], 'label': chunk['label']},
                     chunk['w'], chunk['label']))
    got = coherence.summarize(coherence.streamed_coherence_stats(
        loss, mesh, params, iter(chunks), (stats,)), paths)
    assert got['m'] == 20, got['m']
    _assert_close(got, one)
    # statistics='norms' (fast path) against the one-device vmap pass.
    got = coherence.summarize(coherence.streamed_coherence_stats(
        loss, mesh, params, iter(chunks), (stats,), statistics='norms'), paths)
    for k in ('m_coherence', 'sum_of_sq_norms', 'sq_norm_of_sum'):
      np.testing.assert_allclose(got[k], one[k], rtol=1e-4, err_msg=k)
    for path, layer in one['per_layer'].items():
      np.testing.assert_allclose(got['per_layer'][path]['m_coherence'],
                                 layer['m_coherence'], rtol=1e-4, err_msg=path)
  print('OK')


def aggregators():
  """Global-batch order statistics and group medians of a sharded batch
  equal the numpy result."""
  from tests.test_aggregators import (_cfg, _per_example_grads, _problem,  # pylint: disable=g-import-not-at-top
                                      winsorize_np)
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  cnn_model = cnn.Model(num_classes=3, channels=(2, 3), hidden=4)
  problems = [_problem(batch=16),
              _problem(batch=16, model=cnn_model, shape=(6, 6, 1))]
  for params, batch, loss_fn, per_ex in problems:
    per_example = _per_example_grads(params, batch, per_ex)
    sharded = parallel.to_global(batch, mesh)
    median_of_groups = lambda g: np.median(np.stack(
        [g[i::4].astype(np.float64).mean(0) for i in range(4)]), 0)
    for cfg, expect in [
        (_cfg('winsorize', c=2),
         jax.tree.map(lambda g: winsorize_np(g, 2), per_example)),
        (_cfg('m3', k=4), jax.tree.map(median_of_groups, per_example)),
        (_cfg('sum_sign'), jax.tree.map(
            lambda g: 0.001 * np.sign(g).sum(0), per_example))]:
      fn = jax.jit(aggregators_lib.make_gradient_fn(cfg, loss_fn, per_ex,
                                                    mesh))
      _, grads, _ = fn(params, sharded)
      jax.tree.map(lambda a, b, cfg=cfg: np.testing.assert_allclose(
          np.asarray(a), b, rtol=1e-4, atol=1e-6, err_msg=cfg.aggregator),
                   grads, expect)
  print('OK')


def layer_taps():
  """Dense, Conv and BatchNorm taps on 8 devices equal the one-device vmap
  path."""
  from tests.test_layer_norms import CONVS, ConvNet  # pylint: disable=g-import-not-at-top
  assert jax.device_count() == 8
  mesh = parallel.make_mesh()
  rng = np.random.default_rng(0)
  for model in (mlp.Model(num_classes=3, widths=(16, 16)),
                ConvNet(CONVS['same_stride2'], batch_norm={})):
    x = rng.integers(0, 256, (16, 8, 8, 3)).astype(np.uint8)
    y = rng.integers(0, 3, 16).astype(np.int32)
    params, stats = random_variables(model, x[:1])
    loss = losses.make_per_example_loss(model)
    one = coherence.coherence_stats(
        loss, params, {'image': x, 'label': y}, None, None, (stats,),
        statistics='norms', fast=False)
    rows = parallel.to_global({'image': x, 'label': y,
                               'w': np.ones(16, np.float32)}, mesh)
    w = rows.pop('w')
    eight = coherence.sharded_coherence_stats(
        loss, mesh, params, rows, w, None, (stats,), microbatch_size=1,
        statistics='norms', fast=True)
    for k in ('numerators', 'denominators', 'sq_norm', 'loss'):
      np.testing.assert_allclose(eight[k], one[k], rtol=1e-4, err_msg=k)
  print('OK')


def noise_assignment(data_dir, out_dir, *flags):
  """Writes this process's noisy examples {key: label} of the fake ImageNet
  to OUT_DIR/noise_PROCESS.json, inside a jax.distributed group."""
  args = dict(a.split('=', 1) for a in flags if a.startswith('--'))
  parallel.initialize_distributed(args['--coordinator_address'],
                                  int(args['--num_processes']),
                                  int(args['--process_id']))
  cfg = ml_collections.ConfigDict({'name': 'tfds:imagenet2012',
                                   'data_dir': data_dir, 'image_size': 32,
                                   'augment': False})
  noise = ml_collections.ConfigDict({'rate': 0.5, 'kind': 'uniform',
                                     'exclude_true_label': False, 'seed': 0,
                                     'noisy_means': 'changed'})
  ds = data_lib.load(cfg, noise)
  out = {k: int(l) for k, l, n in zip(ds.train.keys, ds.train.labels,
                                      ds.train.is_noisy) if n}
  with open(f'{out_dir}/noise_{jax.process_index()}.json', 'w') as f:
    json.dump(out, f)
  print('OK')


def killed_while_decoding(data_dir):
  """SIGKILLs this process while 2 decode workers read far ahead."""
  cfg = ml_collections.ConfigDict({'name': 'tfds:imagenet2012',
                                   'data_dir': data_dir, 'image_size': 32,
                                   'augment': True, 'workers': 2,
                                   'threads': 1})
  noise = ml_collections.ConfigDict({'rate': 0.0, 'kind': 'uniform',
                                     'exclude_true_label': False, 'seed': 0,
                                     'noisy_means': 'changed'})
  loader = pipeline.TrainLoader(data_lib.load(cfg, noise).train, 8, seed=0)
  batches = loader.batches(0, 10_000)
  next(batches)
  print('workers', [p.pid for p in multiprocessing.active_children()],
        flush=True)
  os.kill(os.getpid(), signal.SIGKILL)


CHECKS = {f.__name__: f for f in (streamed_probes, aggregators, layer_taps,
                                  noise_assignment, killed_while_decoding)}

if __name__ == '__main__':
  CHECKS[sys.argv[1]](*sys.argv[2:])
