"""ImageNet (TFDS `imagenet2012`) read with random access, decoded on demand.

The data set must be prepared once from the two manual-download tars with the
real TFDS builder, in ArrayRecord format (random access is what makes a batch
a pure function of (seed, step), so a resumed run repeats and skips nothing):

    tfds build imagenet2012 --manual_dir=DIR_WITH_TARS --data_dir=DATA_DIR \
        --file_format=array_record

The stable example key is the image's file name (e.g. 'n01440764_10026.JPEG',
'ILSVRC2012_val_00000001.JPEG'), so label noise is the same for any host count,
order or re-preparation. Images are decoded in a thread pool, JPEGs by
libjpeg-turbo (simplejpeg) at the smallest DCT scale the crop needs:
evaluation resizes the shorter side to size / crop_fraction and
center-crops `size` (0.875: the standard 256 -> 224); training does the
same unless `data.augment`, which
takes an Inception-style random resized crop (scale 0.08-1, aspect 3/4-4/3)
and a random horizontal flip, seeded by (seed, step, position in batch).
"""
import concurrent.futures
import io
import math

import numpy as np
from PIL import Image
import simplejpeg

from cgjax.data import Split, write_npz_atomically

NAME = 'imagenet2012'
NUM_CLASSES = 1000
_POOL = concurrent.futures.ThreadPoolExecutor(16)


def image_size(data: bytes) -> tuple[int, int]:
  """(width, height) from the header alone."""
  try:
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    return width, height
  except ValueError:  # not a JPEG (ImageNet has a PNG and CMYK JPEGs)
    return Image.open(io.BytesIO(data)).size


def decode(data: bytes, min_width: int, min_height: int) -> Image.Image:
  """The RGB image, decoded at 1/2, 1/4 or 1/8 scale where that keeps it at
  least min_width x min_height (the IDCT then skips what the crop's resize
  would throw away), else at full size, by libjpeg-turbo (simplejpeg: 0.97
  ms where PIL takes 1.13 for a 500 x 375 photo). Its n/8 scales other than
  powers of two cost more than a full decode (1.39 ms at 6/8), and its fast
  IDCT changed the fake ImageNet's images enough to break the 1-device vs
  2-process agreement of a 4-step ResNet run: accurate IDCT. Non-JPEGs
  (ImageNet has a PNG and CMYK JPEGs) go through PIL."""
  try:
    height, width, _, _ = simplejpeg.decode_jpeg_header(data)
  except ValueError:
    img = Image.open(io.BytesIO(data))
    img.draft('RGB', (min_width, min_height))
    return img.convert('RGB')
  factor = 1
  while (factor < 8 and width // (2 * factor) >= min_width
         and height // (2 * factor) >= min_height):
    factor *= 2
  return Image.fromarray(simplejpeg.decode_jpeg(
      data, 'RGB', fastdct=False, fastupsample=False,
      min_width=-(-width // factor) if factor > 1 else 0,
      min_height=-(-height // factor) if factor > 1 else 0))


def _resized(data: bytes, box: tuple[float, float, float, float],
             out: tuple[int, int]) -> Image.Image:
  """The region box (left, top, right, bottom; full-resolution pixels) of
  the encoded image, resized to out (bilinear)."""
  width, height = image_size(data)
  left, top, right, bottom = box
  img = decode(data, math.ceil(out[0] * width / (right - left)),
               math.ceil(out[1] * height / (bottom - top)))
  sx, sy = img.width / width, img.height / height
  return img.resize(out, Image.BILINEAR,
                    box=(left * sx, top * sy, right * sx, bottom * sy))


def center_crop(data: bytes, size: int,
                crop_fraction: float = 0.875) -> np.ndarray:
  """Shorter side resized to size / crop_fraction, then the center size^2."""
  width, height = image_size(data)
  short = math.ceil(size / crop_fraction)
  scale = short / min(width, height)
  resized = (max(short, round(width * scale)), max(short, round(height * scale)))
  left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
  # The crop in full-resolution coordinates, resized straight to size.
  box = (left / resized[0] * width, top / resized[1] * height,
         (left + size) / resized[0] * width, (top + size) / resized[1] * height)
  return np.asarray(_resized(data, box, (size, size)))


def random_resized_crop(data: bytes, size: int,
                        rng: np.random.Generator) -> np.ndarray:
  """Inception-style crop: 10 tries at a random area and aspect, then center."""
  w, h = image_size(data)
  for _ in range(10):
    area = w * h * rng.uniform(0.08, 1.0)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
      break
  else:
    cw = ch = min(w, h)
    left, top = (w - cw) // 2, (h - ch) // 2
  out = np.asarray(_resized(data, (left, top, left + cw, top + ch),
                            (size, size)))
  return out[:, ::-1] if rng.random() < 0.5 else out


class LazyImages:
  """Images of one split, decoded and cropped when indexed.

  `images[index]` gives uint8 [n, size, size, 3] (eval preprocessing);
  `read(index, seeds)` gives training crops, one seed per row.
  """

  def __init__(self, source, rows: np.ndarray, size: int, augment: bool,
               crop_fraction: float = 0.875):
    self._source, self._rows = source, rows
    self.size, self.augment = size, augment
    self.crop_fraction = crop_fraction
    self.shape = (len(rows), size, size, 3)
    self.dtype = np.dtype(np.uint8)

  def __len__(self):
    return len(self._rows)

  def view(self, index) -> 'LazyImages':
    return LazyImages(self._source, self._rows[index], self.size, self.augment,
                      self.crop_fraction)

  def _encoded(self, row) -> bytes:
    return self._source[int(row)]['image']

  def read(self, index, seeds=None) -> np.ndarray:
    rows = self._rows[index]
    if seeds is None or not self.augment:
      work = lambda i: center_crop(self._encoded(rows[i]), self.size,
                                   self.crop_fraction)
    else:
      work = lambda i: random_resized_crop(
          self._encoded(rows[i]), self.size, np.random.default_rng(seeds[i]))
    out = list(_POOL.map(work, range(len(rows))))
    return np.stack(out) if out else np.zeros((0, *self.shape[1:]), np.uint8)

  def __getitem__(self, index):
    return self.read(index)


def _key(record) -> str:
  name = record['file_name']
  return name.decode() if isinstance(name, bytes) else str(name)


def _read_index(source) -> tuple[np.ndarray, np.ndarray]:
  """(file names, labels) of every record: one pass, no image decoding."""
  n = len(source)
  keys, labels = [], []
  for start in range(0, n, 4096):
    for record in source.__getitems__(range(start, min(n, start + 4096))):
      keys.append(_key(record))
      labels.append(int(record['label']))
  return np.asarray(keys), np.asarray(labels, np.int32)


def _index(source, split) -> tuple[np.ndarray, np.ndarray]:
  """`_read_index`, cached next to the prepared data after the first start.

  Reading every record takes minutes on the real train split, at every start
  of every host. The cache is checked against the record count and a few
  spot records (a re-prepared data set is re-read), and written by process 0
  only (atomically); where the data dir is read-only the pass just repeats.
  """
  from etils import epath  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  path = epath.Path(source.dataset_info.data_dir) / f'cgjax_index_{split}.npz'
  if path.exists():
    with path.open('rb') as f:
      cached = np.load(f)
      keys, labels = cached['keys'], cached['labels']
    spot = sorted({int(i) for i in np.linspace(0, len(source) - 1, 8)})
    if len(labels) == len(source) and all(
        _key(r) == keys[i] for i, r in zip(spot, source.__getitems__(spot))):
      return keys, labels
  keys, labels = _read_index(source)
  if jax.process_index() == 0:
    write_npz_atomically(path, keys=keys, labels=labels)
  return keys, labels


def _split(name, split, config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config.get('data_dir') or None
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir,
                              decoders={'image': tfds.decode.SkipDecoding()})
  except Exception as err:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f'TFDS {name!r} ({split}) is not prepared in ArrayRecord format in '
        f'{data_dir or "the TFDS default data dir"}. With ILSVRC2012_img_train.tar'
        ' and ILSVRC2012_img_val.tar in MANUAL_DIR, run once:\n'
        f'  tfds build {name} --manual_dir=MANUAL_DIR '
        f'--data_dir={data_dir or "DATA_DIR"} --file_format=array_record\n'
        f'(original error: {type(err).__name__}: {err})') from err
  keys, labels = _index(source, split)
  return Split(images=LazyImages(source, np.arange(len(labels)),
                                 config.image_size,
                                 bool(config.get('augment', False)),
                                 config.get('crop_fraction', 0.875)),
               labels=labels, clean_labels=labels,
               is_noisy=np.zeros(len(labels), bool), keys=keys)


def load(config):
  return (_split(NAME, 'train', config), _split(NAME, 'validation', config),
          NUM_CLASSES)


LOADERS = {f'tfds:{NAME}': load}
