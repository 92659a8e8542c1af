"""Checks that need 8 (fake CPU) devices, run in a fresh process by
test_coherence.py: `python -m tests.sharded_checks` (XLA_FLAGS set there)."""
import jax
import numpy as np

from cgjax import coherence
from cgjax import losses
from cgjax import parallel
from cgjax.models import cnn
from tests.conftest import random_variables

# Stiffness pairs lie inside microbatches, which differ between layouts;
# every all-pairs metric must agree.
ALL_PAIRS = ('m_coherence', 'sum_of_sq_norms', 'sq_norm_of_sum', 'mean_loss',
             'avg_cosine', 'gsnr', 'loss', 'grad_norm', 'per_group',
             'per_layer')


def _assert_close(got, want):
  for k in ALL_PAIRS:
    np.testing.assert_allclose(jax.tree.leaves(got[k]), jax.tree.leaves(want[k]),
                               rtol=1e-4, atol=1e-7, err_msg=k)


def main():
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


if __name__ == '__main__':
  main()
