"""Shared config defaults and the `get_config(arg)` argument parser.

Every field of a cgjax config, documented once here:

  seed              params init, batch order and every fixed sample
                    (probe sets, evaluation sets)
  num_steps         parameter updates
  batch_size        global batch (all devices, all hosts)
  log_every         steps between train-loss log lines / progress output
  checkpoint_every  steps between orbax checkpoints (and one at the end)
  keep_checkpoints  how many checkpoints to keep
  data.name         dataset: 'mnist_5k' | 'digits' (embedded, no download) |
                    'tfds:mnist' | 'tfds:cifar10' (prepared TFDS data)
  data.data_dir     TFDS data dir ('' = TFDS default)
  data.image_size   crop size for 'tfds:imagenet2012' (224 ResNet, 299 Inception)
  data.augment      'tfds:imagenet2012' training crops: Inception-style random
                    resized crop + flip (True) or resize + center crop (False,
                    the papers' choice, so that memorization is visible)
  data.prefetch     training batches read and put on device ahead of the
                    step that uses them, in a background thread (0 = inline)
  noise.rate        fraction of train examples whose label is corrupted, [0, 1]
  noise.kind        'uniform': a uniformly random class; 'permute': the
                    selected labels are permuted among themselves
  noise.exclude_true_label  uniform over the other K - 1 classes only
  noise.seed        which examples are corrupted (independent of `seed`)
  noise.noisy_means which examples count as noisy in every measurement:
                    'changed' (label differs from the original; default) or
                    'selected' (drawn by the noise process, 1/K of them with
                    their original label under 'uniform')
  model.name        module in cgjax/models ('mlp', 'cnn')
  model.kwargs      keyword arguments of that module's Model
  optim.*           optimizer and schedule, see cgjax/optim.py
  optim.aggregator  how the batch gradient is formed: 'mean' (SGD),
                    'winsorize' (per-example values clipped to the
                    (winsorize_c+1)-th extremes per coordinate; no BatchNorm),
                    'm3' (median of m3_groups group means), 'rm3' (median of
                    the last 3 steps' gradients), 'ra3' (their mean); see
                    cgjax/aggregators.py
  optim.winsorize_c c of winsorize (0 = plain mean)
  optim.m3_groups   k of m3 (must divide batch_size)
  measurements      {name: ConfigDict(type=..., schedule, fields)}: what is
                    measured during training, and when. `name` prefixes the
                    metrics (eval/..., probe/...). `type` is a module of
                    cgjax/measurements or any module path; each module's
                    docstring documents its own fields. Every measurement
                    has the schedule fields
      .every            every N steps (0 = off)
      .num_log_spaced   log-spaced steps in [1, num_steps] (the early transient)
      .steps            explicit steps (default (0,): at initialization)
      .at_end           also at the last step
    Types and their fields (defaults in `measurement()` below):
      evaluation       loss, top-1/top-5 on fixed clean / noisy / mixed train
                       samples and the test set: batch_size, sizes.{train,
                       clean,noisy,test} (0 = all)
      coherence        m-coherence probes: m, sets, microbatch_size (per
                       device), statistics ('all' | 'norms')
      learning_times   per-example first-correct / stays-correct steps:
                       examples (0 = all), batch_size, learned_at
      loss_shares      f_p / f_c of the loss decrease, with the permuted null
                       model: null_permutations
"""
import ml_collections

from cgjax import measurements


def measurement(type_name: str, **fields) -> ml_collections.ConfigDict:
  """A `config.measurements` entry: the type's defaults, then `fields`."""
  return measurements.spec(type_name, **fields)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'noise=0.5,seed=0,runlocal' -> fields typed like `defaults`.

  A bare name sets a bool to True. Unknown names are an error that lists the
  known ones.
  """
  out = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    name, eq, value = item.partition('=')
    name = name.strip()
    if name not in defaults:
      raise ValueError(f'unknown config arg {name!r} in {arg!r}; '
                       f'known: {", ".join(sorted(defaults))}')
    kind = type(defaults[name])
    if not eq:
      if kind is not bool:
        raise ValueError(f'config arg {name!r} needs a value ({name}=...)')
      out[name] = True
    elif kind is bool:
      out[name] = value.lower() in ('1', 'true', 'yes')
    else:
      try:
        out[name] = kind(value)
      except ValueError:
        raise ValueError(f'config arg {name}={value!r} is not a '
                         f'{kind.__name__}') from None
  return ml_collections.ConfigDict(out)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_steps = 1000
  c.batch_size = 100
  c.log_every = 100
  c.checkpoint_every = 500
  c.keep_checkpoints = 2

  c.data = ml_collections.ConfigDict({'name': 'mnist_5k', 'data_dir': '',
                                      'image_size': 224, 'augment': False,
                                      'prefetch': 2})
  c.noise = ml_collections.ConfigDict({
      'rate': 0.0, 'kind': 'uniform', 'exclude_true_label': False, 'seed': 0,
      'noisy_means': 'changed'})
  c.model = ml_collections.ConfigDict({'name': 'mlp', 'kwargs': {}})
  c.optim = ml_collections.ConfigDict({
      'name': 'sgd', 'lr': 0.1, 'momentum': 0.0, 'nesterov': False,
      'b1': 0.9, 'b2': 0.999, 'weight_decay': 0.0,
      'schedule': 'constant', 'warmup_steps': 0,
      'step_boundaries': (0.5, 0.75), 'step_factor': 0.1,
      'aggregator': 'mean', 'winsorize_c': 1, 'm3_groups': 3})
  c.measurements = ml_collections.ConfigDict({
      'eval': measurement('evaluation', every=200),
      'probe': measurement('coherence', every=200, num_log_spaced=30)})
  return c


IMAGENET_TRAIN_EXAMPLES = 1_281_167


def imagenet_config(arg, model_name: str, model_kwargs: dict, image_size: int,
                    runlocal_size: int) -> ml_collections.ConfigDict:
  """ImageNet label-noise study as in the m-coherence paper (Chatterjee & Zielinski 2020).

  Choices the papers leave open are stated here: batch 4096, SGD momentum 0.9,
  Goyal et al. schedule (lr 0.1 x batch / 256, 5 warm-up epochs, /10 at epochs
  30, 60, 80 of 90), no weight decay and no augmentation (resize + center
  crop) so that memorization is visible. Measurements once per epoch and at
  20 log-spaced steps: probes of m = 4096 examples per set (the paper used
  ~40K, the follow-up 50K: raise measurements.probe.m on a pod), with
  BatchNorm in eval mode, m-coherence from the per-layer fast path
  (statistics='norms'; 'all' adds GSNR, cosines, stiffness at the cost of
  per-example gradients); evaluation on fixed samples of 50,000 mixed, clean
  and noisy training examples and the whole validation split (the authors'
  trainer); learning times of a fixed 50,000 training examples, with the
  keys learned at epoch 2 written for the easy/hard study; loss-decrease
  shares f_p / f_c.

  arg: noise (default 0), seed, batch, epochs, aggregator ('mean'; 'm3',
  'rm3', 'ra3' run without momentum as in the large-scale CG study; m3 needs
  a batch divisible by 3, e.g. batch=768 for three groups of 256), runlocal
  (a few steps at `runlocal_size` px, batch 16, for a laptop smoke run on
  prepared data).
  """
  a = parse_arg(arg, noise=0.0, seed=0, batch=4096, epochs=90,
                aggregator='mean', runlocal=False)
  c = base_config()
  c.seed = a.seed
  c.data.name = 'tfds:imagenet2012'
  c.data.image_size = image_size
  c.noise.rate = a.noise
  c.model.name = model_name
  c.model.kwargs = model_kwargs
  c.batch_size = a.batch
  steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // a.batch
  c.num_steps = a.epochs * steps_per_epoch
  c.optim.update(name='sgd', lr=0.1 * a.batch / 256, momentum=0.9,
                 schedule='step', warmup_steps=5 * steps_per_epoch,
                 step_boundaries=(30 / 90, 60 / 90, 80 / 90), step_factor=0.1)
  if a.aggregator != 'mean':
    c.optim.update(aggregator=a.aggregator, momentum=0.0)
  c.log_every = 50
  c.checkpoint_every = steps_per_epoch
  epoch_and_early = dict(every=steps_per_epoch, num_log_spaced=20)
  c.measurements = ml_collections.ConfigDict({
      # The authors' trainer: 50K clean, 50K noisy, 50K mixed training
      # examples and the validation set, each epoch.
      'eval': measurement('evaluation', batch_size=1024, sizes={
          'train': 50_000, 'clean': 50_000, 'noisy': 50_000, 'test': 0},
                          **epoch_and_early),
      'probe': measurement('coherence', m=4096, microbatch_size=256,
                           statistics='norms', **epoch_and_early),
      # Learned after 2 epochs: the Weak-and-Strong paper's "easy" examples.
      'learning': measurement('learning_times', examples=50_000,
                              batch_size=1024,
                              learned_at=(2 * steps_per_epoch,),
                              **epoch_and_early),
      'shares': measurement('loss_shares', **epoch_and_early),
  })
  if a.runlocal:
    c.data.image_size = runlocal_size
    c.batch_size, c.num_steps, c.optim.warmup_steps = 16, 4, 0
    c.log_every = c.checkpoint_every = 2
    for m in c.measurements.values():
      m.update(every=2, num_log_spaced=0)
    c.measurements.eval.update(batch_size=16, sizes={
        'train': 64, 'clean': 64, 'noisy': 64, 'test': 0})
    c.measurements.probe.update(m=8, microbatch_size=8)
    c.measurements.learning.update(examples=0, batch_size=16, learned_at=(2,))
  return c
