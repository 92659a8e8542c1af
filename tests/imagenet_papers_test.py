"""The papers' ImageNet configs, streamed probes and the easy/hard recipe,
end to end on a fake ImageNet prepared by the real TFDS builder (a file of
its own so that the test workers share the ImageNet tests' time)."""
import json
import os

import numpy as np
import pytest

from cgjax import workdir as workdir_lib
from cgjax.data import fake_imagenet
from tests.conftest import ROOT, printed_commands, run_python


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return fake_imagenet.build(str(tmp_path_factory.mktemp('imagenet')))


@pytest.mark.parametrize('spec,trials,pick,lrs', [
    # 4 steps at Goyal et al.'s lr for batch 16, held constant.
    ('configs/mcoherence_imagenet.py:runlocal', 5, 2, [0.1 * 16 / 256] * 2),
    # M3 at noise 0.5: 2 epochs of one batch of 18; StepLR(30) counts
    # absolute epochs, as torch's does: 0.1 in both.
    ('configs/ws_imagenet.py:runlocal', 8, 3, [0.1, 0.1]),
])
def test_paper_configs_print_their_grid_and_run(spec, trials, pick, lrs,
                                                data_dir, tmp_path):
  """--print-commands gives the whole grid; one printed command runs on the
  fake ImageNet (given the data dir; ResNet-18 narrowed to width 16 for CPU
  time), at the paper's lr and schedule."""
  commands = printed_commands(spec, str(tmp_path))
  assert len(commands) == trials, commands
  argv = commands[pick] + [f'--config.data.data_dir={data_dir}',
                               '--config.model.kwargs.width=16']
  if 'ws_imagenet' in spec:
    assert f'{ROOT}/configs/ws_imagenet.py:runlocal,optimizer=m3' in argv, argv
  run_python(argv)
  workdir = argv[argv.index('--workdir') + 1]
  assert workdir_lib.read_status(workdir) == 'done'
  rows = workdir_lib.read_metrics(workdir)
  logged = [r['value'] for r in rows if r['name'] == 'train/lr']
  assert logged == pytest.approx(lrs), logged


def test_streamed_probe_memory_does_not_grow_with_m(data_dir):
  """One compiled chunk pass for any m; the live device bytes a probe of 32
  examples adds are at most one chunk more than a probe of 8 adds (holding
  every chunk would add six more); the values are the resident pass's (all
  examples on the device at once)."""
  import gc  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from cgjax import coherence, losses, optim, parallel, train  # pylint: disable=g-import-not-at-top
  from cgjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from cgjax.measurements import coherence as probe_lib  # pylint: disable=g-import-not-at-top
  from configs import mcoherence_imagenet  # pylint: disable=g-import-not-at-top
  config = mcoherence_imagenet.get_config('runlocal')
  config.data.data_dir = data_dir
  config.model.kwargs.width = 8
  ctx = train.make_context(config)
  state = train.initial_state(ctx, optim.make_optimizer(config.optim, 4))
  loss = losses.make_per_example_loss(ctx.model)
  peaks, compiled = {}, {}
  for m in (8, 32):
    cfg = config.measurements.probe.copy_and_resolve_references()
    # Chunks of microbatch_size (no more chunks for rho's interval).
    cfg.update(m=m, sets=('train',), microbatch_size=4, subsamples=1)
    probe = probe_lib.Measurement('probe', cfg, ctx)
    split, index = probe.samples['train']
    assert len(index) == m
    live, chunk_bytes = [], []

    def watched(chunks):
      for chunk in chunks:
        live.append(sum(a.nbytes for a in jax.live_arrays()) - before)
        chunk_bytes.append(sum(a.nbytes for a in jax.tree.leaves(chunk)))
        yield chunk

    # Bytes above what was live before: the absolute count also held the
    # garbage of earlier tests, which collected between m = 8 and m = 32
    # (CI measured 8.0 MB at m = 8, 4.9 MB at m = 32).
    gc.collect()
    before = sum(a.nbytes for a in jax.live_arrays())

    streamed = coherence.summarize(coherence.streamed_coherence_stats(
        loss, ctx.mesh, state.params, watched(probe.chunks(split, index)),
        (state.batch_stats,), statistics='norms'), ctx.param_paths)
    assert len(live) == m // 4
    peaks[m] = max(live)
    compiled[m] = coherence._chunk_pass._cache_size()  # pylint: disable=protected-access
    rows = parallel.to_global(pipeline.pad_batch(split, index, m), ctx.mesh)
    resident = coherence.summarize(coherence.sharded_coherence_stats(
        loss, ctx.mesh, state.params,
        {'image': rows['image'], 'label': rows['label']}, rows['weight'],
        rows['label'], (state.batch_stats,), statistics='norms'),
        ctx.param_paths)
    for key in ('m_coherence', 'sum_of_sq_norms', 'sq_norm_of_sum'):
      np.testing.assert_allclose(streamed[key], resident[key], rtol=1e-5,
                                 err_msg=key)
    del rows
  assert compiled[32] == compiled[8]  # m = 32 compiled nothing new
  assert peaks[32] <= peaks[8] + max(chunk_bytes), (peaks, chunk_bytes)


def _classified_correctly(workdir, step) -> set:
  """Keys of the training examples that the run's checkpoint at `step`
  classifies as their training label: a direct eval-mode forward pass over
  every training image."""
  import jax  # pylint: disable=g-import-not-at-top
  from cgjax import data as data_lib, models, runs  # pylint: disable=g-import-not-at-top
  run = runs.load(workdir)
  config = run.config
  train_split = data_lib.load(config.data, config.noise).train
  model = models.get_model(config.model.name, 1000, **config.model.kwargs)
  restored = run.restore(step)
  images = train_split.read_images(np.arange(len(train_split)))
  logits = jax.jit(model.apply)({'params': restored['params'],
                                 'batch_stats': restored['batch_stats']},
                                images)
  correct = np.argmax(np.asarray(logits), 1) == train_split.labels
  return set(train_split.keys[correct].tolist())


def test_easy_hard_recipe_runs_end_to_end(data_dir, tmp_path):
  """The selection classifies all 32 training examples (its learning-times
  sample is 4); each subset run counts epochs on what it trains on."""
  workdir = str(tmp_path / 'eh')
  run_python(['-m', 'experiments.easy_hard', '--config',
              'configs/ws_imagenet.py:runlocal', '--workdir', workdir,
              f'--config.data.data_dir={data_dir}',
              '--config.model.kwargs.width=8',
              '--config.measurements.learning.examples=4'])
  select = os.path.join(workdir, 'select')
  # 2 epochs of 32 examples at batch 16: the selection at step 4.
  easy = json.load(open(os.path.join(select, 'learning_learned_at_4.json')))
  hard = json.load(open(os.path.join(select,
                                     'learning_not_learned_at_4.json')))
  assert set(easy['keys']) == _classified_correctly(select, 4)
  assert len(easy['keys']) > 4  # more than the learning-times sample
  assert not set(easy['keys']) & set(hard['keys'])
  assert len(easy['keys']) + len(hard['keys']) == 32
  # The selection run's 2 epochs of StepLR(30): lr 0.1 at every logged step,
  # as torch's StepLR counts absolute epochs (fractions of the run, 30/90 and
  # 60/90 of 2 epochs, had made it 0.001 in the second epoch).
  select_lrs = [r['value'] for r in workdir_lib.read_metrics(select)
                if r['name'] == 'train/lr']
  assert select_lrs and select_lrs == pytest.approx([0.1] * len(select_lrs))
  for name, keys in (('easy', easy['keys']), ('hard', hard['keys'])):
    subset = os.path.join(workdir, name)
    rows = workdir_lib.read_metrics(subset)
    at0 = {r['name']: r['value'] for r in rows if r['step'] == 0}
    # 2 of the subset held out as its test split, the rest trained on; the
    # original validation split evaluated too.
    trained = len(keys) - 2
    assert at0['data/test_examples'] == 2
    assert at0['data/train_examples'] == trained
    assert 'eval/validation_acc' in at0
    # Epochs of the subset at batch 2: 2 epochs of StepLR(30) per epoch,
    # logged once an epoch: 0.1 throughout.
    epoch = trained // 2
    config = json.load(open(os.path.join(subset, 'config.json')))
    assert config['num_steps'] == 2 * epoch
    lrs = {r['step']: r['value'] for r in rows if r['name'] == 'train/lr'}
    assert lrs == pytest.approx({epoch: 0.1, 2 * epoch: 0.1}), lrs
  table = open(os.path.join(workdir, 'easy_hard.md')).read()
  assert '| easy |' in table and '| hard |' in table, table
