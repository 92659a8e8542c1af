"""The real training loop, a few steps on the embedded MNIST.

One in-process reference run; the same config on 8 fake devices and a run
killed with SIGKILL and relaunched must reproduce it.
"""
import json
import os

import jax
import numpy as np
import pytest

from cgjax import data as data_lib
from cgjax import models
from cgjax import session
from cgjax import train
from cgjax import workdir as workdir_lib
from configs import mnist_mlp
from tests.conftest import (assert_same_run, load_params, metric_rows,
                            run_python, tensorboard_hparams)

# Divisible by 8 devices; eval every 2 steps so that a kill at step 15 leaves
# metrics rows past the step-10 checkpoint, which a resume must drop; log
# every 4 so that the step-10 checkpoint falls inside a log interval.
OVERRIDES = {'batch_size': 64, 'measurements.eval.every': 2, 'log_every': 4}
FLAGS = [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
CONFIG = 'configs/mnist_mlp.py:runlocal'


def _config(**extra):
  c = mnist_mlp.get_config('runlocal')
  for k, v in {**OVERRIDES, **extra}.items():
    node = c
    *parents, leaf = k.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ref'))
  final = train.train_and_evaluate(_config(), workdir)
  return workdir, final


def test_run_writes_metrics_probes_and_status(ref):
  workdir, final = ref
  rows = workdir_lib.read_metrics(workdir)
  names = {r['name'] for r in rows}
  for s in ('clean', 'noisy', 'test'):
    steps = sorted(r['step'] for r in rows
                   if r['name'] == f'probe/{s}/m_coherence')
    # Probes at 0, 10, 20 and log-spaced 1, 4 (1, 4.47, 20); the full
    # statistics at every 2nd of them (all_every=2), norms elsewhere.
    assert steps == [0, 1, 4, 10, 20]
    assert sorted(r['step'] for r in rows if r['name'] ==
                  f'probe/{s}/avg_cosine') == [0, 4, 20]
    for metric in ('per_layer/dense0/kernel/m_coherence',
                   'per_group/dense0/alpha', 'mean_sq_grad_norm',
                   'gradient_diversity', 'avg_cosine', 'gsnr',
                   'stiffness/cos_same_class', 'loss/q50', 'grad_norm/q90'):
      assert f'probe/{s}/{metric}' in names, metric
  for name in ('train/loss', 'eval/clean_acc', 'eval/noisy_acc_vs_noisy_label',
               'eval/noisy_acc_vs_clean_label', 'eval/test_acc',
               'eval/test_top5', 'eval/noisy_top5_vs_clean_label',
               'eval/clean_loss', 'eval/adjusted_overfit',
               'learning/clean/ever_correct',
               'learning/noisy/ever_correct_vs_clean_label', 'shares/f_p',
               'shares/null_f_c'):
    assert name in names, name
  assert final['eval/test_acc'] > 0.3  # learned something in 20 steps (chance 0.1)
  assert json.load(open(os.path.join(workdir, 'status.json')))['state'] == 'done'
  probe_ids = json.load(open(os.path.join(workdir, 'probe_ids.json')))
  assert {k: len(v) for k, v in probe_ids.items()} == {
      'clean': 50, 'noisy': 50, 'test': 50}
  # TensorBoard lists the run by its workdir, the config in the HParams tab.
  hparams, columns = tensorboard_hparams(workdir)
  assert hparams['noise.rate'] == 0.5 and hparams['model.name'] == 'mlp'
  boundaries = tuple(_config().optim.step_boundaries)  # a tuple per element
  assert boundaries and all(hparams[f'optim.step_boundaries[{i}]'] == b
                            for i, b in enumerate(boundaries))
  assert 'eval/test_acc' in columns and 'train/loss' in columns
  assert os.path.exists(os.path.join(workdir, 'learning.npz'))
  # checkpoint_every=10 of 20 steps: exactly these, none orbax chose itself.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '20']


@pytest.mark.slow  # launch.py in fresh processes
def test_eight_devices_match_one(ref, tmp_path):
  workdir, _ = ref
  run_python(['launch.py', '--config', CONFIG, '--workdir', str(tmp_path),
              *FLAGS], devices=8)
  assert_same_run(workdir, str(tmp_path), 20)


# Killed after the metrics of step 14 (past the step-10 checkpoint), and of
# step 2 (no checkpoint yet: the relaunch starts over in the same workdir).
@pytest.mark.slow  # launch.py in fresh processes
@pytest.mark.parametrize('kill_at,resumed_from', [(14, 10), (2, None)])
def test_resume_after_kill_is_bitwise_identical(ref, tmp_path, kill_at,
                                                resumed_from):
  workdir, _ = ref
  args = ['--config', CONFIG, '--workdir', str(tmp_path), *FLAGS]
  killed = run_python(['-m', 'tests.fault_launch', 'KILL', str(kill_at),
                       *args], check=False)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert json.load(open(tmp_path / 'status.json'))['state'] == 'running'
  written = [r['step'] for r in workdir_lib.read_metrics(str(tmp_path))]
  assert max(written) == kill_at  # rows past the last checkpoint exist
  resumed = run_python(['launch.py', *args])
  if resumed_from is None:
    assert 'resuming' not in resumed.stdout, resumed.stdout
  else:
    assert f'from step {resumed_from}\n' in resumed.stdout, resumed.stdout
  assert metric_rows(str(tmp_path)) == metric_rows(workdir)
  jax.tree.map(np.testing.assert_array_equal, load_params(workdir, 20),
               load_params(str(tmp_path), 20))
  # Learning times continue from the checkpointed state, not from scratch.
  with np.load(os.path.join(workdir, 'learning.npz')) as want, \
      np.load(tmp_path / 'learning.npz') as got:
    assert sorted(want.files) == sorted(got.files)
    for name in want.files:
      np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_learning_times_follow_the_predictions_of_saved_params(ref):
  """Recomputed from the params at each measured step, by a naive loop."""
  workdir, _ = ref
  config = _config()
  dataset = data_lib.load(config.data, config.noise)
  model = models.get_model(config.model.name, dataset.num_classes,
                           **config.model.kwargs)
  init = jax.jit(lambda rng: model.init(rng, dataset.train.images[:1],
                                        train=False)['params'])
  with np.load(os.path.join(workdir, 'learning.npz')) as f:
    saved = {k: f[k] for k in f.files}
  np.testing.assert_array_equal(saved['steps'], [0, 10, 20])
  np.testing.assert_array_equal(saved['keys'], dataset.train.keys)
  params = {0: init(jax.random.key(config.seed)),
            10: load_params(workdir, 10), 20: load_params(workdir, 20)}
  pred = {t: np.argmax(model.apply({'params': p}, dataset.train.images), -1)
          for t, p in params.items()}
  for labels, suffix in ((dataset.train.labels, ''),
                         (dataset.train.clean_labels, '_clean_label')):
    first = np.full(len(labels), -1)
    stays = np.full(len(labels), -1)
    for i in range(len(labels)):
      history = [(t, pred[t][i] == labels[i]) for t in (0, 10, 20)]
      first[i] = next((t for t, ok in history if ok), -1)
      for t, _ in history:
        if all(ok for u, ok in history if u >= t):
          stays[i] = t
          break
    np.testing.assert_array_equal(saved[f'first_correct{suffix}'], first)
    np.testing.assert_array_equal(saved[f'stays_correct{suffix}'], stays)
    assert (first >= 0).sum() > 1000  # a real test: many were learned


def test_relaunching_a_finished_run_changes_nothing(ref):
  workdir, final = ref
  before = open(os.path.join(workdir, 'metrics.jsonl')).read()
  files = sorted(os.listdir(workdir))
  again = train.train_and_evaluate(_config(), workdir)
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == before
  assert sorted(os.listdir(workdir)) == files  # no empty event file either
  for name in ('eval/test_acc', 'probe/clean/m_coherence'):
    assert again[name] == final[name]


def test_divergence_is_reported(tmp_path):
  """Caught by the evaluation after the first step (eval every 2 steps and
  at every log-spaced step), before the loss is logged at step 4."""
  workdir = str(tmp_path)
  with pytest.raises(session.Diverged, match='diverged at step 1: '
                     'eval/train_loss inf'):
    train.train_and_evaluate(_config(**{'optim.lr': 1e9}), workdir)
  status = json.load(open(os.path.join(workdir, 'status.json')))
  assert status['state'] == 'diverged' and status['step'] == 1


def test_divergence_of_the_loss_alone_is_reported(tmp_path):
  workdir = str(tmp_path)
  config = _config(**{'optim.lr': 1e9})
  config.measurements = {}
  with pytest.raises(session.Diverged, match='diverged at step 4: loss nan'):
    train.train_and_evaluate(config, workdir)
  status = json.load(open(os.path.join(workdir, 'status.json')))
  assert status['state'] == 'diverged' and status['step'] == 4


def test_different_config_into_same_workdir_is_refused(ref):
  workdir, _ = ref
  before = {f: open(os.path.join(workdir, f)).read()
            for f in ('config.json', 'metrics.jsonl', 'status.json')}
  with pytest.raises(ValueError, match=r"optim.lr: 0.1 in the workdir, 0.05 now"):
    train.train_and_evaluate(_config(**{'optim.lr': 0.05}), workdir)
  for f, text in before.items():
    assert open(os.path.join(workdir, f)).read() == text


@pytest.mark.parametrize('override,message', [
    ({'noise.rate': 1.5}, r'noise.rate must be in \[0, 1\], got 1.5'),
    ({'noise.rate': -0.2}, r'got -0.2'),
    ({'data.name': 'imagenet'}, r"unknown dataset 'imagenet'; available: .*mnist_5k"),
    ({'model.name': 'densenet'}, r"unknown model 'densenet': not one of "
     r"cgjax's \(alexnet, cnn, efficientnet, inception_v3, mlp, resnet, vgg"),
    ({'optim.name': 'lion'}, r"unknown optimizer 'lion'; choose from"),
    ({'optim.schedule': 'exp'}, r"unknown optim.schedule 'exp'"),
    ({'measurements.probe.m': 5000}, r"measurements.probe.m=5000 is larger "
     r"than the 4000 examples of the split of set 'clean'"),
    ({'measurements.probe.m': 0}, r'measurements.probe.m must be >= 1, got 0'),
    ({'data.image_size': 0}, r'data.image_size must be >= 1, got 0'),
    ({'measurements.eval.sizes.train': -5},
     r'measurements.eval.sizes.train must be >= 0 \(0 = all\), got -5'),
    ({'measurements.probe.microbatch_size': 0},
     r'measurements.probe.microbatch_size must be >= 1, got 0'),
    ({'keep_checkpoints': 0}, r'keep_checkpoints must be >= 1, got 0'),
    ({'measurements.probe.statistics': 'fast'},
     r"measurements.probe.statistics must be one of .*'fast'"),
    ({'measurements.probe.sets': ('clean', 'dirty')},
     r"measurements.probe.sets: unknown set\(s\) \['dirty'\]"),
    ({'measurements.probe.type': 'nope'}, r"unknown measurement type 'nope'"),
    ({'measurements.eval.every': -1},
     r'measurements.eval.every must be >= 0, got -1'),
    ({'measurements.learning.learned_at': (50,)},
     r'learned_at steps must lie in \[0, num_steps=20\], got \[50\]'),
    ({'measurements.shares.null_permutations': 0},
     r'measurements.shares.null_permutations must be >= 1, got 0'),
    ({'noise.noisy_means': 'maybe'}, r"noise.noisy_means must be one of"),
])
def test_bad_config_is_rejected_before_writing(tmp_path, override, message):
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(_config(**override), workdir)
  assert not os.path.exists(workdir)


@pytest.mark.slow  # launch.py in fresh processes
def test_launch_rejects_unknown_key_and_indivisible_batch(tmp_path):
  bad_key = run_python(['launch.py', '--config', CONFIG,
                        '--config.optim.lrr=0.1'], check=False)
  assert bad_key.returncode != 0
  assert ("unknown config key 'config.optim.lrr': config.optim has no field "
          "'lrr'") in bad_key.stderr
  bad_arg = run_python(['launch.py', '--config', 'configs/mnist_mlp.py:nois=1'],
                       check=False)
  assert "unknown config arg 'nois'" in bad_arg.stderr
  workdir = tmp_path / 'run'
  indivisible = run_python(['launch.py', '--config', CONFIG, '--workdir',
                            str(workdir), '--config.batch_size=100'],
                           devices=8, check=False)
  assert indivisible.returncode != 0
  assert ('batch_size=100 is not divisible by the device count 8'
          in indivisible.stderr)
  assert not workdir.exists()
