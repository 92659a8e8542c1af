"""Label noise as a pure function of (seed, stable example keys, clean labels).

The examples to corrupt and their new labels are derived from a keyed hash of
each example's stable identity, never from its position, so the assignment is
the same for any input order, host count, shuffle, restart or re-preparation.
"""
import dataclasses
import hashlib
from typing import Sequence

import numpy as np

KINDS = ('uniform', 'permute')


def stable_hash(keys: Sequence, seed: int, tag: str) -> np.ndarray:
  """64-bit hash of each key's string form, salted by (seed, tag)."""
  prefix = f'{int(seed)}/{tag}/'.encode()
  out = np.empty(len(keys), np.uint64)
  for i, key in enumerate(keys):
    raw = key if isinstance(key, bytes) else str(key).encode()
    digest = hashlib.blake2b(prefix + raw, digest_size=8).digest()
    out[i] = int.from_bytes(digest, 'little')
  return out


@dataclasses.dataclass(frozen=True)
class NoisyLabels:
  labels: np.ndarray     # int32 [n], the labels training sees
  is_noisy: np.ndarray   # bool [n], selected for corruption
  num_selected: int
  num_changed: int       # selected and new label != clean label


def check_rate(rate: float, field: str = 'noise rate'):
  if not 0.0 <= rate <= 1.0 or not np.isfinite(rate):
    raise ValueError(f'{field} must be in [0, 1], got {rate!r}')


def num_selected(rate: float, n: int) -> int:
  """round(rate * n), halves rounded up (not Python's banker's rounding)."""
  return int(np.floor(rate * n + 0.5))


def corrupt_labels(clean_labels, keys, *, num_classes: int, rate: float,
                   seed: int, kind: str = 'uniform',
                   exclude_true_label: bool = False) -> NoisyLabels:
  """Selects exactly round(rate * n) examples and gives them noisy labels.

  Args:
    clean_labels: int array [n] in [0, num_classes).
    keys: n unique stable example identities (ints, strings or bytes).
    num_classes: number of classes K.
    rate: fraction of examples to select, in [0, 1].
    seed: noise seed; a different seed selects different examples.
    kind: 'uniform' gives each selected example a class drawn uniformly
      (rate 1 = fully random labels); 'permute' permutes the selected
      examples' labels among themselves (the label marginal is preserved).
    exclude_true_label: with 'uniform', draw from the K - 1 other classes, so
      every selected label changes.
  """
  clean_labels = np.asarray(clean_labels)
  n = clean_labels.shape[0]
  check_rate(rate)
  if kind not in KINDS:
    raise ValueError(f'unknown noise kind {kind!r}; choose one of {KINDS}')
  if kind == 'permute' and exclude_true_label:
    raise ValueError("exclude_true_label applies to kind='uniform' only")
  if num_classes < 2:
    raise ValueError(f'num_classes must be >= 2, got {num_classes}')
  if len(keys) != n:
    raise ValueError(f'{len(keys)} keys for {n} labels')
  if n and (clean_labels.min() < 0 or clean_labels.max() >= num_classes):
    raise ValueError(f'labels must lie in [0, {num_classes}), got range '
                     f'[{clean_labels.min()}, {clean_labels.max()}]')
  key_strings = np.array([k.decode() if isinstance(k, bytes) else str(k)
                          for k in keys])
  if len(np.unique(key_strings)) != n:
    raise ValueError('example keys must be unique')

  # Canonical order: by salted hash, ties (practically never) by key.
  canonical = np.lexsort((key_strings, stable_hash(keys, seed, 'select')))
  selected = canonical[:num_selected(rate, n)]
  labels = clean_labels.astype(np.int32).copy()
  if kind == 'uniform':
    draw = stable_hash(keys, seed, 'label')[selected]
    if exclude_true_label:
      offset = 1 + (draw % np.uint64(num_classes - 1)).astype(np.int64)
      labels[selected] = (clean_labels[selected] + offset) % num_classes
    else:
      labels[selected] = (draw % np.uint64(num_classes)).astype(np.int32)
  else:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    labels[selected] = clean_labels[selected][rng.permutation(len(selected))]
  is_noisy = np.zeros(n, bool)
  is_noisy[selected] = True
  return NoisyLabels(labels=labels, is_noisy=is_noisy,
                     num_selected=len(selected),
                     num_changed=int((labels != clean_labels).sum()))
