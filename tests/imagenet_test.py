"""ImageNet end to end on a fake set prepared by the real TFDS builder."""
import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from cgjax import data as data_lib
from cgjax import workdir as workdir_lib
from cgjax.data import imagenet
from cgjax.data import fake_imagenet
from tests.conftest import assert_same_run, run_processes, run_python

CONFIG = 'configs/imagenet_resnet50.py:runlocal,noise=0.5'
# A narrow ResNet-18 at 32 px, probed and evaluated at steps 0 and 4 only,
# keeps CPU time small; everything else is the ResNet-50 config's runlocal.
SMALL = ['--config.data.image_size=32', '--config.model.kwargs.depth=18',
         '--config.model.kwargs.width=16', *[
             f'--config.measurements.{m}.every=4'
             for m in ('eval', 'probe', 'learning', 'shares')],
         '--config.measurements.learning.learned_at=(4,)',
         '--config.measurements.shares.batches=2']
# BatchNorm over a 16-example global batch amplifies float32 reduction-order
# differences between meshes in single near-zero weights, so runs are compared
# per parameter leaf in norm; a wrong statistic (e.g. per-device batches of 2)
# would differ by O(1). (Near-zero BN biases after 4 steps reach ~1e-3.)
LEAF_RTOL = 1e-2


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return fake_imagenet.build(str(tmp_path_factory.mktemp('imagenet')))


@pytest.fixture(scope='module')
def ref(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ref'))
  run_python(['launch.py', '--config', CONFIG, '--workdir', workdir,
              f'--config.data.data_dir={data_dir}', *SMALL])
  return workdir


def _config(data_dir):
  return ml_collections.ConfigDict({'name': 'tfds:imagenet2012',
                                    'data_dir': data_dir, 'image_size': 32,
                                    'augment': False})


def _noise(rate):
  return ml_collections.ConfigDict({'rate': rate, 'kind': 'uniform',
                                    'exclude_true_label': False, 'seed': 0,
                                    'noisy_means': 'changed'})


def test_split_keys_labels_and_noise(data_dir):
  ds = data_lib.load(_config(data_dir), _noise(0.5))
  assert len(ds.train) == 32 and len(ds.test) == 16 and ds.num_classes == 1000
  assert ds.noise.num_selected == 16
  # Train labels come from the synset tar names, in TFDS's synset order.
  for key, label in zip(ds.train.keys, ds.train.clean_labels):
    assert key.startswith(('n01440764_', 'n01443537_', 'n01484850_',
                           'n01491361_'))
    assert label == ['n01440764', 'n01443537', 'n01484850',
                     'n01491361'].index(key.split('_')[0])
  assert ds.test.keys[0].startswith('ILSVRC2012_val_')
  images = ds.test.read_images(np.arange(4))
  assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8


def test_index_cache_is_used_and_checked(data_dir, monkeypatch):
  fresh = data_lib.load(_config(data_dir), _noise(0.0))  # writes the caches
  version_dir = os.path.dirname(next(
      os.path.join(d, 'cgjax_index_train.npz')
      for d, _, files in os.walk(data_dir) if 'cgjax_index_train.npz' in files))
  def no_pass(source):
    raise AssertionError('read every record although a valid cache exists')
  with monkeypatch.context() as m:
    m.setattr(imagenet, '_read_index', no_pass)
    cached = data_lib.load(_config(data_dir), _noise(0.0))
  np.testing.assert_array_equal(cached.train.keys, fresh.train.keys)
  np.testing.assert_array_equal(cached.train.labels, fresh.train.labels)
  # A stale cache (as after re-preparing in another order) is detected.
  path = os.path.join(version_dir, 'cgjax_index_train.npz')
  np.savez(path, keys=fresh.train.keys[::-1], labels=fresh.train.labels[::-1])
  again = data_lib.load(_config(data_dir), _noise(0.0))
  np.testing.assert_array_equal(again.train.keys, fresh.train.keys)
  np.testing.assert_array_equal(np.load(path)['keys'], fresh.train.keys)


def test_crops():
  img = Image.fromarray(np.arange(100 * 80 * 3, dtype=np.uint8).reshape(80, 100, 3))
  assert imagenet.center_crop(img, 32).shape == (32, 32, 3)
  a = imagenet.random_resized_crop(img, 24, np.random.default_rng(5))
  b = imagenet.random_resized_crop(img, 24, np.random.default_rng(5))
  c = imagenet.random_resized_crop(img, 24, np.random.default_rng(6))
  assert a.shape == (24, 24, 3)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()


def test_not_prepared_says_how(tmp_path):
  with pytest.raises(FileNotFoundError, match='tfds build imagenet2012 '
                     '--manual_dir=MANUAL_DIR'):
    data_lib.load(_config(str(tmp_path)), _noise(0.0))


def test_trains_through_launch_with_noise_and_probes(ref):
  rows = workdir_lib.read_metrics(ref)
  names = {r['name'] for r in rows}
  for s in ('clean', 'noisy', 'train', 'test'):
    assert f'probe/{s}/m_coherence' in names
    # Per-layer series of the three named layers only (probe.layers).
    layers = {n.split('/per_layer/')[1].rsplit('/', 1)[0] for n in names
              if n.startswith(f'probe/{s}/per_layer/')}
    assert layers == {'stem_conv/kernel', 'stage3_block0/conv2/kernel',
                      'head/kernel'}, layers
    assert f'probe/{s}/per_group/stage1/m_coherence' in names
    assert f'probe/{s}/gsnr' not in names  # the per-layer fast path ('norms')
  assert {r['name']: r['value'] for r in rows if r['step'] == 0}[
      'noise/num_selected'] == 16
  assert json.load(open(os.path.join(ref, 'status.json')))['state'] == 'done'
  probe_ids = json.load(open(os.path.join(ref, 'probe_ids.json')))
  assert all(k.endswith('.JPEG') for ids in probe_ids.values() for k in ids)
  for name in ('eval/noisy_top5_vs_clean_label', 'learning/clean/ever_correct',
               'shares/f_p', 'shares/null_f_p'):
    assert name in names, name
  learned = json.load(open(os.path.join(ref, 'learning_learned_at_4.json')))
  assert learned['step'] == 4
  assert all(k.endswith('.JPEG') for k in learned['keys'])


def test_eight_devices_match_one(ref, data_dir, tmp_path):
  run_python(['launch.py', '--config', CONFIG, '--workdir', str(tmp_path),
              f'--config.data.data_dir={data_dir}', *SMALL], devices=8)
  assert_same_run(ref, str(tmp_path), 4, leaf_rtol=LEAF_RTOL)


def test_two_processes_match_one_device(ref, data_dir, tmp_path):
  run_processes(['launch.py', '--config', CONFIG, '--workdir', str(tmp_path),
                 f'--config.data.data_dir={data_dir}', *SMALL])
  assert_same_run(ref, str(tmp_path), 4, leaf_rtol=LEAF_RTOL)
  # Per-example measurements gather every process's rows in one order, and
  # the shares see the same global batch (identical params at step 0).
  with np.load(os.path.join(ref, 'learning.npz')) as a, \
      np.load(tmp_path / 'learning.npz') as b:
    np.testing.assert_array_equal(a['keys'], b['keys'])
    np.testing.assert_array_equal(a['steps'], b['steps'])
    # Step 0: the same params, so the same examples classified correctly.
    np.testing.assert_array_equal(a['first_correct'] == 0,
                                  b['first_correct'] == 0)
  at_0 = lambda w: {r['name']: r['value'] for r in workdir_lib.read_metrics(w)
                    if r['step'] == 0 and r['name'].startswith('shares/')}
  one, two = at_0(ref), at_0(str(tmp_path))
  assert one.keys() == two.keys() and one
  for k in one:
    np.testing.assert_allclose(two[k], one[k], rtol=1e-3, err_msg=k)


def test_noise_assignment_same_with_one_and_two_processes(data_dir, tmp_path):
  ds = data_lib.load(_config(data_dir), _noise(0.5))
  one = {k: int(l) for k, l, n in zip(ds.train.keys, ds.train.labels,
                                      ds.train.is_noisy) if n}
  run_processes(['-m', 'tests.sharded_checks', 'noise_assignment', data_dir,
                 str(tmp_path)])
  for p in range(2):
    assert json.load(open(tmp_path / f'noise_{p}.json')) == one
  assert len(one) == 16
