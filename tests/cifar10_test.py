"""The CIFAR-10 configs end to end on a fake CIFAR-10 prepared by the real
TFDS builder: their sweeps' printed commands, and one of each run."""

import pytest

from cgjax import workdir as workdir_lib
from cgjax.data import fake_cifar10
from tests.conftest import printed_commands, run_python


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return fake_cifar10.build(str(tmp_path_factory.mktemp('cifar10')))


def test_the_fake_set_is_read_as_cifar10(data_dir):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from cgjax import data as data_lib  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  dataset = data_lib.load(ml_collections.ConfigDict(
      {**common.base_config().data, 'name': 'tfds:cifar10',
       'data_dir': data_dir}), common.base_config().noise)
  assert (len(dataset.train), len(dataset.test)) == (
      common.FAKE_CIFAR10_TRAIN_EXAMPLES, 32)
  assert dataset.train.read_images([0]).shape == (1, 32, 32, 3)
  assert dataset.train.keys[0].startswith('train_')  # TFDS's id feature


@pytest.mark.parametrize('spec,trials,pick,steps,lrs', [
    # M3 at noise 0.5: 64 // 15 = 4 steps an epoch, 2 epochs; StepLR(30)
    # counts absolute epochs: 0.1 in both.
    ('configs/ws_cifar10.py:runlocal', 8, 3, 8, [0.1, 0.1]),
    # Random labels: 64 // 16 = 4 steps an epoch; /10 at 50% (epoch 1).
    ('configs/mcoherence_cifar10.py:runlocal', 5, 4, 8, [0.1, 0.01]),
])
def test_cifar10_configs_print_their_grid_and_run(spec, trials, pick, steps,
                                                  lrs, data_dir, tmp_path):
  commands = printed_commands(spec, str(tmp_path))
  assert len(commands) == trials, commands
  argv = commands[pick] + [f'--config.data.data_dir={data_dir}',
                               '--config.model.kwargs.width=8']
  run_python(argv)
  workdir = argv[argv.index('--workdir') + 1]
  assert workdir_lib.read_status(workdir) == 'done'
  rows = workdir_lib.read_metrics(workdir)
  assert max(r['step'] for r in rows) == steps
  # One lr an epoch (logged at each epoch's last step).
  logged = [r['value'] for r in rows if r['name'] == 'train/lr']
  assert logged == pytest.approx(lrs), logged
  names = {r['name'] for r in rows}
  assert 'probe/noisy/m_coherence' in names and 'eval/test_acc' in names
