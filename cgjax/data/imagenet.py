"""ImageNet (TFDS `imagenet2012`) read with random access, decoded on demand.

The data set must be prepared once from the two manual-download tars with the
real TFDS builder, in ArrayRecord format (random access is what makes a batch
a pure function of (seed, step), so a resumed run repeats and skips nothing):

    tfds build imagenet2012 --manual_dir=DIR_WITH_TARS --data_dir=DATA_DIR \
        --file_format=array_record

The stable example key is the image's file name (e.g. 'n01440764_10026.JPEG',
'ILSVRC2012_val_00000001.JPEG'), so label noise is the same for any host count,
order or re-preparation. Images are decoded with PIL (`data.threads`
threads in each process; batches read ahead in `data.workers` processes,
cgjax/data/workers.py): evaluation resizes the shorter side to
size / crop_fraction and center-crops `size` (0.875: the standard
256 -> 224); training does the same unless `data.augment`, which takes an
Inception-style random resized crop (scale 0.08-1, aspect 3/4-4/3) and a
random horizontal flip, seeded by (seed, step, position in batch).
"""
import concurrent.futures
import functools
import io
import math

import numpy as np
from PIL import Image

from cgjax import storage
from cgjax.data import Split, import_tfds, write_npz_atomically
from cgjax.data import workers as workers_lib

NAME = 'imagenet2012'
NUM_CLASSES = 1000


@functools.cache
def _decode_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
  """One pool per thread count and process (a worker process makes its own:
  a pool does not pickle)."""
  return concurrent.futures.ThreadPoolExecutor(threads, 'cgjax-decode')


def _resize_short_side(img: Image.Image, short: int) -> Image.Image:
  w, h = img.size
  scale = short / min(w, h)
  return img.resize((max(short, round(w * scale)), max(short, round(h * scale))),
                    Image.BILINEAR)


def center_crop(img: Image.Image, size: int,
                crop_fraction: float = 0.875) -> np.ndarray:
  img = _resize_short_side(img, math.ceil(size / crop_fraction))
  w, h = img.size
  left, top = (w - size) // 2, (h - size) // 2
  return np.asarray(img.crop((left, top, left + size, top + size)))


def random_resized_crop(img: Image.Image, size: int,
                        rng: np.random.Generator) -> np.ndarray:
  """Inception-style crop: 10 tries at a random area and aspect, then center."""
  w, h = img.size
  for _ in range(10):
    area = w * h * rng.uniform(0.08, 1.0)
    aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
      img = img.crop((left, top, left + cw, top + ch))
      break
  else:
    side = min(w, h)
    img = img.crop(((w - side) // 2, (h - side) // 2,
                    (w - side) // 2 + side, (h - side) // 2 + side))
  out = np.asarray(img.resize((size, size), Image.BILINEAR))
  return out[:, ::-1] if rng.random() < 0.5 else out


class LazyImages:
  """Images of one split, decoded and cropped when indexed.

  `images[index]` gives uint8 [n, size, size, 3] (eval preprocessing);
  `read(index, seeds)` gives training crops, one seed per row. Pickles small
  (the TFDS source reopens its files), so worker processes can read it;
  `workers` and `threads` are how cgjax/data/workers.py reads it ahead.
  """

  def __init__(self, source, rows: np.ndarray, size: int, augment: bool,
               crop_fraction: float = 0.875, workers: int = 0,
               threads: int = workers_lib.THREADS_IN_PROCESS):
    self._source, self._rows = source, rows
    self.size, self.augment = size, augment
    self.crop_fraction = crop_fraction
    self.workers, self.threads = workers, threads
    self.shape = (len(rows), size, size, 3)
    self.dtype = np.dtype(np.uint8)

  def __len__(self):
    return len(self._rows)

  def view(self, index) -> 'LazyImages':
    return LazyImages(self._source, self._rows[index], self.size, self.augment,
                      self.crop_fraction, self.workers, self.threads)

  def _decode(self, row) -> Image.Image:
    image = self._source[int(row)]['image']
    return Image.open(io.BytesIO(image)).convert('RGB')

  def read(self, index, seeds=None) -> np.ndarray:
    rows = self._rows[index]
    if seeds is None or not self.augment:
      work = lambda i: center_crop(self._decode(rows[i]), self.size,
                                   self.crop_fraction)
    else:
      work = lambda i: random_resized_crop(
          self._decode(rows[i]), self.size, np.random.default_rng(seeds[i]))
    if self.threads > 1:
      out = list(_decode_pool(self.threads).map(work, range(len(rows))))
    else:  # no pool: one thread decodes in its worker process
      out = list(map(work, range(len(rows))))
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
  import jax  # pylint: disable=g-import-not-at-top
  path = storage.join(str(source.dataset_info.data_dir),
                      f'cgjax_index_{split}.npz')
  if storage.exists(path):
    with storage.open_file(path, 'rb') as f:
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
  tfds = import_tfds(f'data.name=tfds:{name}')
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
  workers, threads = workers_lib.resolve(config.get('workers', 0),
                                         config.get('threads', 0))
  return Split(images=LazyImages(source, np.arange(len(labels)),
                                 config.image_size,
                                 bool(config.get('augment', False)),
                                 config.get('crop_fraction', 0.875),
                                 workers, threads),
               labels=labels, clean_labels=labels,
               is_noisy=np.zeros(len(labels), bool), keys=keys)


def load(config):
  return (_split(NAME, 'train', config), _split(NAME, 'validation', config),
          NUM_CLASSES)


LOADERS = {f'tfds:{NAME}': load}
