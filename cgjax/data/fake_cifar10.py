"""A small fake CIFAR-10 in the real download's layout, prepared by TFDS.

For tests and smoke runs without the real archive: cifar-10-binary.tar.gz
holds cifar-10-batches-bin/ with data_batch_1..5.bin and test_batch.bin
(records of 1 label byte + 3,072 image bytes, R, G, B planes of 32 x 32) and
batches.meta.txt, the class names. The real `cifar10` builder prepares it,
reading the archive from the manual dir as a manually downloaded file;
only the archive's registered checksum is replaced by the fake's (an
unregistered subclass of the same name, so the data lands where
`tfds.builder('cifar10')` reads it).
"""
import io
import os
import tarfile

import numpy as np

from cgjax.data import import_tfds

# The real set's class names, in its label order.
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
           'horse', 'ship', 'truck')
ARCHIVE = 'cifar-10-binary.tar.gz'


def _records(rng, n) -> bytes:
  labels = rng.integers(0, len(CLASSES), n).astype(np.uint8)
  # Class-dependent mean colour plus noise: learnable, not trivial.
  base = rng.integers(0, 256, (len(CLASSES), 3, 1, 1))
  images = np.clip(base[labels] + rng.normal(0, 40, (n, 3, 32, 32)), 0,
                   255).astype(np.uint8)
  return b''.join(bytes([l]) + img.tobytes() for l, img in zip(labels, images))


def _add(tar, name, data: bytes):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def build(root, num_train=64, num_test=32) -> str:
  """Writes the archive under root/manual and prepares root/data; returns
  the data dir. `num_train` examples spread over the 5 training batches."""
  tfds = import_tfds('the fake CIFAR-10')
  rng = np.random.default_rng(0)
  manual = os.path.join(root, 'manual')
  os.makedirs(manual, exist_ok=True)
  per_batch = np.diff(np.linspace(0, num_train, 6).astype(int))
  with tarfile.open(os.path.join(manual, ARCHIVE), 'w:gz') as tar:
    prefix = 'cifar-10-batches-bin/'
    for i, n in enumerate(per_batch):
      _add(tar, f'{prefix}data_batch_{i + 1}.bin', _records(rng, n))
    _add(tar, f'{prefix}test_batch.bin', _records(rng, num_test))
    _add(tar, f'{prefix}batches.meta.txt', '\n'.join(CLASSES).encode())
  data_dir = os.path.join(root, 'data')
  builder = _builder(tfds, os.path.join(manual, ARCHIVE))(data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual))
  return data_dir


def _builder(tfds, archive: str):
  """TFDS's Cifar10 with `archive`'s checksum registered for its URL."""
  info = tfds.core.download.checksums.compute_url_info(archive)

  class Cifar10(tfds.image_classification.Cifar10, skip_registration=True):

    @property
    def url_infos(self):
      return {self._cifar_info.url: info}

  return Cifar10
