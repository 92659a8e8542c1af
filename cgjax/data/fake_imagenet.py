"""A small fake ImageNet in the real manual-download layout, prepared by TFDS.

For tests, benchmarks and smoke runs without the real tars (the noise, the
probes and the whole pipeline run exactly as on ImageNet).

ILSVRC2012_img_train.tar holds one tar of JPEGs per synset (named like the
real ones, from TFDS's own synset list); ILSVRC2012_img_val.tar holds
ILSVRC2012_val_%08d.JPEG files, which the builder labels from its shipped
validation label list. The real `imagenet2012` builder prepares them.
"""
import io
import os
import tarfile

import numpy as np
from PIL import Image

from cgjax.data import import_tfds


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _jpeg(rng, sizes):
  h, w = rng.integers(*sizes, size=2)  # varied sizes and aspect ratios
  # Smooth content plus a little noise: JPEG sizes and decode times closer to
  # photographs than pure noise would give.
  coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8))
  pixels = np.asarray(coarse.resize((w, h), Image.BICUBIC), np.int16)
  pixels = pixels + rng.integers(-8, 9, pixels.shape)
  buf = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
      buf, 'JPEG', quality=90)
  return buf.getvalue()


def build(root, num_classes=4, per_class=8, num_val=16, sizes=(40, 90)):
  """Writes the tars under root/manual and prepares root/data; returns it.

  Image heights and widths are drawn from [sizes[0], sizes[1]) (the real
  set's are mostly 300-500 px).
  """
  tfds = import_tfds('the fake ImageNet')
  rng = np.random.default_rng(0)
  manual = os.path.join(root, 'manual')
  os.makedirs(manual, exist_ok=True)
  synsets = tfds.core.tfds_path(
      'datasets/imagenet2012/labels.txt').read_text().split()[:num_classes]
  with tarfile.open(os.path.join(manual, 'ILSVRC2012_img_train.tar'), 'w') as outer:
    for synset in synsets:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as tar:
        for i in range(per_class):
          _add(tar, f'{synset}_{i}.JPEG', _jpeg(rng, sizes))
      _add(outer, f'{synset}.tar', inner.getvalue())
  with tarfile.open(os.path.join(manual, 'ILSVRC2012_img_val.tar'), 'w') as tar:
    for i in range(num_val):
      _add(tar, f'ILSVRC2012_val_{i + 1:08d}.JPEG', _jpeg(rng, sizes))
  data_dir = os.path.join(root, 'data')
  builder = tfds.builder('imagenet2012', data_dir=data_dir,
                         file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return data_dir
