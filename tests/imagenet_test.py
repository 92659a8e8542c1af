"""ImageNet end to end on a fake set prepared by the real TFDS builder."""
import io
import json
import multiprocessing
import os

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cgjax import data as data_lib
from cgjax import workdir as workdir_lib
from cgjax.data import imagenet
from cgjax.data import fake_imagenet
from cgjax.data import pipeline
from cgjax.data import workers
from tests.conftest import (assert_same_run, load_params, metric_rows,
                            run_processes, run_python)

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


def _loaded(data_dir, augment, workers, threads):
  config = _config(data_dir)
  config.update(augment=augment, workers=workers, threads=threads)
  return data_lib.load(config, _noise(0.5))


def _grain_workers() -> int:
  return sum(p.name.startswith('grain-process-prefetch')
             for p in multiprocessing.active_children())


@pytest.mark.parametrize('augment', [False, True])
def test_worker_processes_give_todays_batches(data_dir, augment):
  """Training batches (crossing an epoch) and padded evaluation batches
  decoded in 2 Grain worker processes equal those of the reader cgjax had
  (16 threads in this process): same examples, crops and pixels."""
  ours, today = (_loaded(data_dir, augment, w, t) for w, t in ((2, 1), (0, 16)))
  assert ours.train.images.workers == 2 and today.train.images.workers == 0
  want = [pipeline.TrainLoader(today.train, 8, seed=3).batch(s)
          for s in range(7)]  # 4 steps per epoch
  got = pipeline.TrainLoader(ours.train, 8, seed=3).batches(0, 7)
  for step, (batch, expected) in enumerate(zip(got, want)):
    assert _grain_workers() == 2, step
    assert batch.keys() == expected.keys()
    for name in batch:
      np.testing.assert_array_equal(batch[name], expected[name], err_msg=name)
  # 16 test images in batches of 12: the second padded with weight-0 rows.
  want = [pipeline.pad_batch(today.test, np.arange(12), 12),
          pipeline.pad_batch(today.test, np.arange(12, 16), 12)]
  got = list(pipeline.padded_batches(ours.test, 12))
  assert len(got) == 2 and list(got[1]['weight']) == [1] * 4 + [0] * 8
  for batch, expected in zip(got, want):
    for name in batch:
      np.testing.assert_array_equal(batch[name], expected[name], err_msg=name)


def test_eval_crops_are_pils_resize_and_center_crop(data_dir):
  """The reader's eval crop, against PIL called directly on the record."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source('imagenet2012', split='validation',
                            data_dir=data_dir,
                            decoders={'image': tfds.decode.SkipDecoding()})
  got = _loaded(data_dir, False, 2, 1).test.read_images(np.arange(16))
  for i in range(16):
    img = Image.open(io.BytesIO(source[i]['image'])).convert('RGB')
    w, h = img.size
    short = 37  # ceil(32 / 0.875)
    img = img.resize((max(short, round(w * short / min(w, h))),
                      max(short, round(h * short / min(w, h)))),
                     Image.BILINEAR)
    left, top = (img.size[0] - 32) // 2, (img.size[1] - 32) // 2
    np.testing.assert_array_equal(
        got[i], np.asarray(img.crop((left, top, left + 32, top + 32))))


def test_worker_settings_are_checked():
  with pytest.raises(ValueError, match='data.workers must be .* got -2'):
    workers.resolve(-2, 0)
  with pytest.raises(ValueError, match='data.threads must be .* got -1'):
    workers.resolve(0, -1)
  assert workers.resolve(-1, 0) == (workers.host_cores(), 1)
  assert workers.resolve(0, 0) == (0, 16)


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


def test_resume_after_kill_is_bitwise_identical(ref, data_dir, tmp_path):
  """Killed (SIGKILL) after step 2's loss is logged, while 2 decode worker
  processes read batches 2 and 3, and relaunched: it resumes from the
  step-1 checkpoint and ends bitwise as the uninterrupted run without
  workers did (its training, evaluation and probe reads all in workers)."""
  args = ['--config', CONFIG, '--workdir', str(tmp_path),
          f'--config.data.data_dir={data_dir}', *SMALL,
          '--config.checkpoint_every=1', '--config.data.workers=2']
  killed = run_python(['-m', 'tests.fault_launch', 'KILL', '2', *args],
                      check=False)
  assert killed.returncode == -9, killed.stderr[-2000:]
  resumed = run_python(['launch.py', *args])
  assert 'from step 1\n' in resumed.stdout, resumed.stdout
  assert metric_rows(str(tmp_path)) == metric_rows(ref)
  jax.tree.map(np.testing.assert_array_equal, load_params(ref, 4),
               load_params(str(tmp_path), 4))


def test_decode_workers_exit_with_a_killed_parent(data_dir):
  """Grain's workers, blocked on a queue nobody reads, would live on after
  a SIGKILL of their parent and keep its output pipes open (so run_python
  would time out); cgjax's parent watch ends them within a second."""
  killed = run_python(['-m', 'tests.sharded_checks', 'killed_while_decoding',
                       data_dir], check=False, timeout=120)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert killed.stdout.startswith('workers [') and ', ' in killed.stdout


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
