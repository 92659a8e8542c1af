"""The Weights & Biases tracker, offline (no network), read back from the
file W&B wrote."""
import glob
import json
import os
import struct

from cgjax.workdir import records
from tests.conftest import run_python


def _wandb_records(path):
  """The protobuf records of a .wandb file: LevelDB-log blocks of 32 KiB
  after a 7-byte header, each chunk a (crc, length, type) header; type 1 is
  a whole record, 2-4 its first, middle and last parts."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as f:
    data = f.read()
  assert data[:4] == b':W&B'
  pos, block, whole, part = 7, 32768, [], b''
  while pos + 7 <= len(data):
    if block - pos % block < 7:  # a block's tail too short for a header
      pos += block - pos % block
      continue
    _, length, kind = struct.unpack('<IHB', data[pos:pos + 7])
    chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
    if kind == 0:
      break
    part = chunk if kind in (1, 2) else part + chunk
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(part)
      whole.append(record)
  return whole


def test_wandb_offline_carries_the_scalars_and_the_config(tmp_path):
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, WANDB_MODE='offline', WANDB_SILENT='true')
  os.environ.update(env)
  try:
    run_python(['launch.py', '--config', 'configs/mnist_mlp.py:runlocal',
                '--workdir', workdir, "--config.trackers=('wandb',)"])
  finally:
    for name in ('WANDB_MODE', 'WANDB_SILENT'):
      os.environ.pop(name, None)
  path, = glob.glob(os.path.join(workdir, 'wandb', 'offline-run-*',
                                 'run-*.wandb'))
  logged, config = {}, {}
  for record in _wandb_records(path):
    kind = record.WhichOneof('record_type')
    if kind == 'history':
      items = {i.key or '/'.join(i.nested_key): json.loads(i.value_json)
               for i in record.history.item}
      step = items.pop('_step')
      logged.update({(step, k): v for k, v in items.items()
                     if not k.startswith('_')})
    elif kind in ('run', 'config'):
      update = (record.run.config if kind == 'run' else record.config).update
      config.update({i.key: json.loads(i.value_json) for i in update})
  rows = {(r['step'], r['name']): r['value']
          for r in records.read_metrics(workdir)}
  assert set(logged) == set(rows)
  for key, value in rows.items():
    assert abs(logged[key] - value) <= 1e-6 * max(1.0, abs(value)), key
  assert config['optim.lr'] == 0.1 and config['noise.rate'] == 0.5
  assert config['trackers'] == ['wandb']
