"""Label noise: exact counts, determinism, order independence, uniformity."""
import decimal

import numpy as np
import pytest
from scipy import stats

from cgjax.data import noise


def _setup(n=1000, k=10, seed=3):
  rng = np.random.default_rng(seed)
  return rng.integers(0, k, n), np.arange(n) * 7 + 11  # keys are not positions


def _round_half_up(x):
  return int(decimal.Decimal(repr(x)).quantize(0, decimal.ROUND_HALF_UP))


@pytest.mark.parametrize('n,rate', [(1000, 0.5), (7, 0.5), (9, 0.25), (10, 0.05),
                                    (333, 1 / 3), (50, 0.0), (50, 1.0)])
@pytest.mark.parametrize('kind', ['uniform', 'permute'])
def test_exact_selected_count(n, rate, kind):
  labels, keys = _setup(n)
  out = noise.corrupt_labels(labels, keys, num_classes=10, rate=rate, seed=0,
                             kind=kind)
  expected = _round_half_up(rate * n)
  assert out.is_noisy.sum() == expected == out.num_selected
  assert out.num_changed == int((out.labels != labels).sum())
  np.testing.assert_array_equal(out.labels[~out.is_noisy], labels[~out.is_noisy])


def test_deterministic_and_seed_dependent():
  labels, keys = _setup()
  a = noise.corrupt_labels(labels, keys, num_classes=10, rate=0.3, seed=1)
  b = noise.corrupt_labels(labels, keys, num_classes=10, rate=0.3, seed=1)
  c = noise.corrupt_labels(labels, keys, num_classes=10, rate=0.3, seed=2)
  np.testing.assert_array_equal(a.labels, b.labels)
  np.testing.assert_array_equal(a.is_noisy, b.is_noisy)
  assert (a.is_noisy != c.is_noisy).any()


@pytest.mark.parametrize('kind', ['uniform', 'permute'])
def test_order_independent(kind):
  labels, keys = _setup()
  perm = np.random.default_rng(0).permutation(len(labels))
  a = noise.corrupt_labels(labels, keys, num_classes=10, rate=0.4, seed=5,
                           kind=kind)
  b = noise.corrupt_labels(labels[perm], keys[perm], num_classes=10, rate=0.4,
                           seed=5, kind=kind)
  np.testing.assert_array_equal(a.labels[perm], b.labels)
  np.testing.assert_array_equal(a.is_noisy[perm], b.is_noisy)


def test_string_keys_like_imagenet_file_names():
  keys = [f'n{i:08d}_{i}.JPEG' for i in range(200)]
  labels = np.arange(200) % 5
  a = noise.corrupt_labels(labels, keys, num_classes=5, rate=0.5, seed=0)
  b = noise.corrupt_labels(labels[::-1], keys[::-1], num_classes=5, rate=0.5,
                           seed=0)
  np.testing.assert_array_equal(a.labels, b.labels[::-1])
  assert a.num_selected == 100


def test_uniform_labels_pass_chi_square():
  k, n = 10, 20000
  labels = np.zeros(n, int)  # all clean labels 0: the noisy ones must spread
  out = noise.corrupt_labels(labels, np.arange(n), num_classes=k, rate=1.0,
                             seed=0)
  counts = np.bincount(out.labels, minlength=k)
  chi2 = ((counts - n / k) ** 2 / (n / k)).sum()
  assert chi2 < stats.chi2.ppf(0.999, k - 1), counts
  # About 1/K of the selected labels keep the clean label by chance.
  assert abs(out.num_changed / n - (1 - 1 / k)) < 0.01


def test_exclude_true_label_is_uniform_over_the_others():
  k, n = 10, 20000
  labels = np.random.default_rng(1).integers(0, k, n)
  out = noise.corrupt_labels(labels, np.arange(n), num_classes=k, rate=1.0,
                             seed=0, exclude_true_label=True)
  assert out.num_changed == n
  shift = (out.labels - labels) % k
  counts = np.bincount(shift, minlength=k)[1:]
  chi2 = ((counts - n / (k - 1)) ** 2 / (n / (k - 1))).sum()
  assert chi2 < stats.chi2.ppf(0.999, k - 2), counts


def test_permute_preserves_label_marginal():
  labels, keys = _setup(2000)
  out = noise.corrupt_labels(labels, keys, num_classes=10, rate=0.5, seed=0,
                             kind='permute')
  sel = out.is_noisy
  np.testing.assert_array_equal(np.sort(out.labels[sel]), np.sort(labels[sel]))
  assert out.num_changed > 0.8 * sel.sum()  # a permutation moves most labels


@pytest.mark.parametrize('rate', [-0.1, 1.5, float('nan')])
def test_bad_rate_names_the_value(rate):
  labels, keys = _setup(10)
  with pytest.raises(ValueError, match=r'noise rate must be in \[0, 1\], got '
                     + repr(rate)):
    noise.corrupt_labels(labels, keys, num_classes=10, rate=rate, seed=0)


def test_bad_inputs():
  labels, keys = _setup(10)
  with pytest.raises(ValueError, match="unknown noise kind 'flip'"):
    noise.corrupt_labels(labels, keys, num_classes=10, rate=0.5, seed=0,
                         kind='flip')
  with pytest.raises(ValueError, match='unique'):
    noise.corrupt_labels(labels, [0] * 10, num_classes=10, rate=0.5, seed=0)
  with pytest.raises(ValueError, match=r'\[0, 3\)'):
    noise.corrupt_labels(labels, keys, num_classes=3, rate=0.5, seed=0)
