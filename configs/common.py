"""Shared config defaults and the `get_config(arg)` argument parser.

Every field of a cgjax config, documented once here:

  seed              params init, batch order and every fixed sample
                    (probe sets, evaluation sets)
  init_from         'WORKDIR@STEP': start from the params (and BatchNorm
                    statistics) of another run's checkpoint at STEP instead
                    of an init from `seed` (the W&S code's "adversarial
                    initialization"); the step count starts at 0. Part of
                    the config fingerprint, as every field. '' = init
  init_optimizer    with init_from: the optimizer state (momentum) too; the
                    two runs' optimizers must then have one structure
  trackers          experiment trackers beside metrics.jsonl and
                    TensorBoard, the same scalars and the config: ('wandb',)
                    (Weights & Biases; WANDB_PROJECT, WANDB_MODE=offline, ...
                    from the environment) or module paths of your own
                    (cgjax/trackers/__init__.py has the interface)
  num_steps         parameter updates
  batch_size        global batch (all devices, all hosts)
  bn_group_size     BatchNorm statistics in training over groups of this many
                    consecutive examples of the batch (ghost batches: one GPU's
                    share under data parallelism without synchronized
                    BatchNorm, fixed whatever this run's device count); the
                    running averages take the groups' mean update. 0 = the
                    whole global batch. Models without BatchNorm ignore it
  log_every         steps between train-loss log lines / progress output
  checkpoint_every  steps between orbax checkpoints (and one at the end)
  keep_checkpoints  how many checkpoints to keep
  lock_stale_after  seconds without a heartbeat (refreshed every 10 s) after
                    which another launch takes over the workdir lock of an
                    owner on another host, or a suspended one (one on this
                    host is checked by pid and its start time); the owner
                    taken over stops at its next write
  data.name         dataset: 'mnist_5k' | 'digits' (embedded, no download) |
                    'tfds:mnist' | 'tfds:fashion_mnist' | 'tfds:cifar10'
                    (prepared TFDS data)
  data.data_dir     TFDS data dir ('' = TFDS default)
  data.image_size   crop size for 'tfds:imagenet2012' (224 ResNet, 299 Inception)
  data.crop_fraction  'tfds:imagenet2012' center crops: the shorter side is
                    resized to image_size / crop_fraction (0.875: 256 -> 224;
                    1.0: resize to the crop, the W&S Inception-V3 recipe)
  data.augment      'tfds:imagenet2012' training crops: Inception-style random
                    resized crop + flip (True) or resize + center crop (False,
                    the papers' choice, so that memorization is visible)
  data.prefetch     training batches read and put on device ahead of the
                    step that uses them, in a background thread (0 = inline)
  data.workers      'tfds:imagenet2012': processes per host decoding whole
                    batches ahead (training, evaluation, probes; Grain):
                    -1 = one per core this process may use, 0 = decode in
                    the training process. Never changes a batch
  data.threads      'tfds:imagenet2012': decode threads in each process
                    (0 = 1 per worker process, 16 without workers)
  data.include_keys JSON key list (a list, or {'keys': [...]} as
                    learning_times' learned_at files): train only on these
                    training examples ('' = all)
  data.exclude_keys JSON key list of training examples left out ('' = none)
  data.heldout_size training examples (of those selected, in key-hash order)
                    held out as the test split; the data set's own test split
                    is then evaluated as 'validation' (0 = no hold-out)
  data.train_size   training examples kept after the hold-out (0 = all)
  noise.rate        fraction of train examples whose label is corrupted, [0, 1]
  noise.kind        'uniform': a uniformly random class; 'permute': the
                    selected labels are permuted among themselves
  noise.exclude_true_label  uniform over the other K - 1 classes only
  noise.seed        which examples are corrupted (independent of `seed`)
  noise.noisy_means which examples count as noisy in every measurement:
                    'changed' (label differs from the original; default) or
                    'selected' (drawn by the noise process, 1/K of them with
                    their original label under 'uniform')
  model.name        module in cgjax/models ('mlp', 'cnn', 'resnet',
                    'inception_v3', 'vgg', 'efficientnet', 'alexnet')
  model.kwargs      keyword arguments of that module's Model (documented in
                    its docstring; e.g. normalize='imagenet', dropout)
  optim.name        'sgd' | 'adam' | 'adamw' (cgjax/optim.py)
  optim.lr          peak learning rate (after warm-up, before the schedule)
  optim.momentum    sgd momentum in [0, 1) (0 = vanilla SGD, the CG papers')
  optim.nesterov    sgd: Nesterov momentum
  optim.b1          adam / adamw first-moment decay
  optim.b2          adam / adamw second-moment decay
  optim.weight_decay  sgd / adam: weight_decay * w added to the gradient
                    (coupled L2, before any aggregator's median); adamw:
                    decoupled decay
  optim.schedule    'constant' | 'cosine' | 'step' | 'linear' (to 0)
  optim.warmup_steps  linear warm-up from 0 over this many steps
  optim.step_boundaries  'step': fractions of training at which the lr is
                    multiplied by step_factor
  optim.step_factor 'step': the factor at each boundary
  optim.step_size   'step': multiply by step_factor every step_size units
                    instead of at step_boundaries (units: epochs with
                    schedule_every, else steps; counted from the start,
                    whatever the run's length: torch's StepLR(step_size), the
                    W&S ResNet-18's 30); 0 = step_boundaries
  optim.schedule_every  the lr changes every N steps only, as a schedule of
                    num_steps // N units: N = steps per epoch gives torch's
                    schedulers stepped once per epoch (the Weak-and-Strong
                    trainer: StepLR from the first epoch at or past each
                    boundary, CosineAnnealingLR's closed form); 1 = per step.
                    No warm-up with N > 1
  optim.rm3_warmup  rm3 / ra3 before a third gradient: 'skip' (no update,
                    the authors' code) or 'repeat' (the first gradient fills
                    the buffer; updates from step 0)
  optim.aggregator  how the batch gradient is formed: 'mean' (SGD),
                    'winsorize' (per-example values clipped to the
                    (winsorize_c+1)-th extremes per coordinate; no BatchNorm),
                    'm3' (median of m3_groups group means), 'rm3' (median of
                    the last 3 steps' gradients), 'ra3' (their mean),
                    'sign_sum' (0.001 x sign of the mean gradient) and
                    'sum_sign' (0.001 x the sum of the per-example gradients'
                    signs; no BatchNorm), the CG code's policies; see
                    cgjax/aggregators.py
  optim.winsorize_c c of winsorize (0 = plain mean)
  optim.m3_groups   k of m3 (must divide batch_size)
  measurements      {name: ConfigDict(type=..., schedule, fields)}: what is
                    measured during training, and when. `name` prefixes the
                    metrics (eval/..., probe/...). `type` is a module of
                    cgjax/measurements or any module path; each module's
                    docstring documents its own fields. Every measurement
                    has the schedule fields (below)
      .every            every N steps (0 = off)
      .num_log_spaced   log-spaced steps in [1, num_steps] (the early transient)
      .steps            explicit steps (default (0,): at initialization)
      .at_end           also at the last step
    Types and their fields (defaults in `measurement()` below):
      evaluation       loss, top-1/top-5 on fixed clean / noisy / mixed train
                       samples and the test set: batch_size, sizes.{train,
                       clean,noisy,test} (0 = all)
      coherence        m-coherence probes: m, sets, microbatch_size (per
                       device), statistics ('all' | 'norms'), all_every (the
                       full set at every N-th probe of a 'norms' probe),
                       layers
      learning_times   per-example first-correct / stays-correct steps:
                       examples (0 = all), batch_size, learned_at
      loss_shares      f_p / f_c of the loss decrease, with the permuted null
                       model: null_permutations

`python -m configs.common > docs/config.md` writes the config reference
from this docstring, the defaults below and the measurement modules' own
field lists (a test checks that it is current and that every field is
documented).
"""
import importlib
import re

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
  c.init_from = ''
  c.init_optimizer = False
  c.trackers = ()
  c.num_steps = 1000
  c.batch_size = 100
  c.bn_group_size = 0
  c.log_every = 100
  c.checkpoint_every = 500
  c.keep_checkpoints = 2
  c.lock_stale_after = 120.0

  c.data = ml_collections.ConfigDict({'name': 'mnist_5k', 'data_dir': '',
                                      'image_size': 224, 'augment': False,
                                      'crop_fraction': 0.875,
                                      'prefetch': 2, 'workers': -1,
                                      'threads': 0, 'include_keys': '',
                                      'exclude_keys': '', 'heldout_size': 0,
                                      'train_size': 0})
  c.noise = ml_collections.ConfigDict({
      'rate': 0.0, 'kind': 'uniform', 'exclude_true_label': False, 'seed': 0,
      'noisy_means': 'changed'})
  c.model = ml_collections.ConfigDict({'name': 'mlp', 'kwargs': {}})
  c.optim = ml_collections.ConfigDict({
      'name': 'sgd', 'lr': 0.1, 'momentum': 0.0, 'nesterov': False,
      'b1': 0.9, 'b2': 0.999, 'weight_decay': 0.0,
      'schedule': 'constant', 'warmup_steps': 0,
      'step_boundaries': (0.5, 0.75), 'step_factor': 0.1, 'step_size': 0,
      'schedule_every': 1, 'aggregator': 'mean', 'winsorize_c': 1,
      'm3_groups': 3, 'rm3_warmup': 'skip'})
  c.measurements = ml_collections.ConfigDict({
      'eval': measurement('evaluation', every=200),
      'probe': measurement('coherence', every=200, num_log_spaced=30)})
  return c


def noise_sweep(a, rates) -> list[dict]:
  """A sweep over `rates`; with `a.seeds` = N > 1, each rate at seeds
  a.seed ... a.seed + N - 1 (the report draws their mean and spread)."""
  if a.seeds < 1:
    raise ValueError(f'config arg seeds must be >= 1, got {a.seeds}')
  if a.seeds == 1:
    return [{'noise.rate': rate} for rate in rates]
  return [{'noise.rate': rate, 'seed': a.seed + s} for rate in rates
          for s in range(a.seeds)]


IMAGENET_TRAIN_EXAMPLES = 1_281_167

# name: (cgjax model, kwargs, image size, smallest size for runlocal smoke
# runs, the layers the papers follow: first
# conv, an intermediate one, the final dense). Inputs are normalized with the
# ImageNet mean/std, as the torchvision-trained references are. Every model
# field is listed, so that --config.model.kwargs.X overrides any of them.
RESNET = {'width': 64, 'zero_init_residual': False, 'small_inputs': False,
          'dtype': 'float32'}
IMAGENET_MODELS = {
    'resnet18': ('resnet', {'depth': 18, **RESNET}, 224, 32,
                 ('stem_conv/kernel', 'stage3_block0/conv1/kernel',
                  'head/kernel')),
    'resnet50': ('resnet', {'depth': 50, **RESNET}, 224, 32,
                 ('stem_conv/kernel', 'stage3_block0/conv2/kernel',
                  'head/kernel')),
    'inception_v3': ('inception_v3', {'dropout': 0.5, 'dtype': 'float32'},
                     299, 75,
                     ('conv_1a/conv/kernel', 'mixed_6b/ConvBN_0/conv/kernel',
                      'head/kernel')),
    'vgg13_bn': ('vgg', {'depth': 13, 'width': 64, 'hidden': 4096,
                         'dropout': 0.5, 'dtype': 'float32'}, 224, 32,
                 ('block1_conv0/kernel', 'block3_conv0/kernel',
                  'head/kernel')),
    'efficientnet_b0': ('efficientnet', {'dropout': 0.2,
                                         'stochastic_depth': 0.2,
                                         'dtype': 'float32'}, 224, 32,
                        ('stem/conv/kernel', 'stage4_block0/expand/conv/kernel',
                         'head/kernel')),
}


# The fake ImageNet's training examples (cgjax/data/fake_imagenet.py: 4
# classes x 8): what `runlocal` counts epochs on unless told otherwise.
FAKE_IMAGENET_TRAIN_EXAMPLES = 32


def epoch_steps(a, batch: int, full: int = IMAGENET_TRAIN_EXAMPLES,
                fake: int = FAKE_IMAGENET_TRAIN_EXAMPLES) -> int:
  """Steps in an epoch of `a.train_examples` (0: the data set's `full`
  training set, or the `fake` one's under runlocal) at `batch`: a run on a
  subset (the easy/hard study's) counts epochs on its own training set."""
  n = a.train_examples or (fake if a.runlocal else full)
  if n < batch:
    raise ValueError(f'train_examples={n} is fewer than one batch of {batch}')
  return n // batch


def imagenet_config(a, *, batch: int, lr: float, momentum: float,
                    probe_m: int, epochs_per_measurement: int = 1
                    ) -> ml_collections.ConfigDict:
  """ImageNet (TFDS imagenet2012) with label noise, for `a` from parse_arg
  with fields model, noise, seed, epochs, train_examples, runlocal.

  Shared by the papers' configs: no augmentation (resize + center crop) and
  no weight decay, so that memorization is visible; SGD; `a.epochs` epochs
  of `a.train_examples`; measurements every `epochs_per_measurement` epochs
  and at 20 log-spaced steps: evaluation on fixed samples of 50,000 mixed,
  clean and noisy training examples and the whole validation split (the
  authors' trainer); m-coherence probes of `probe_m` examples per set
  (clean, noisy, mixed, test), streamed in eval mode (BatchNorm running
  statistics) through the per-layer fast path (statistics='norms'),
  per-layer series for the model's three named layers; learning times of a
  fixed 50,000 training examples, and at 2 epochs every training example
  (the easy/hard selection); loss-decrease shares. The paper's config sets
  the schedule, then `imagenet_runlocal` where asked.
  """
  if a.model not in IMAGENET_MODELS:
    raise ValueError(f'unknown model {a.model!r}; choose from '
                     f'{", ".join(IMAGENET_MODELS)}')
  name, kwargs, size, _, layers = IMAGENET_MODELS[a.model]
  c = base_config()
  c.seed = a.seed
  c.data.update(name='tfds:imagenet2012', image_size=size)
  c.noise.rate = a.noise
  c.model.name = name
  c.model.kwargs = {**kwargs, 'normalize': 'imagenet'}
  c.batch_size = batch
  steps_per_epoch = epoch_steps(a, batch)
  c.num_steps = a.epochs * steps_per_epoch
  c.optim.update(name='sgd', lr=lr, momentum=momentum, weight_decay=0.0)
  c.log_every = 50
  c.checkpoint_every = steps_per_epoch
  schedule = dict(every=epochs_per_measurement * steps_per_epoch,
                  num_log_spaced=20)
  c.measurements = ml_collections.ConfigDict({
      # The authors' trainer: 50K clean, 50K noisy, 50K mixed training
      # examples and the validation set, each epoch.
      'eval': measurement('evaluation', batch_size=1024, sizes={
          'train': 50_000, 'clean': 50_000, 'noisy': 50_000, 'test': 0},
                          **schedule),
      # 32 examples per device and chunk: fits every model on a 16 GB TPU v3
      # core but VGG-13-BN (benchmarks/scale_plan.py).
      'probe': measurement('coherence', m=probe_m, microbatch_size=32,
                           sets=('clean', 'noisy', 'train', 'test'),
                           statistics='norms', layers=layers, **schedule),
      # Learned after 2 epochs, over the whole training set: the
      # Weak-and-Strong paper's "easy" examples.
      'learning': measurement('learning_times', examples=50_000,
                              batch_size=1024,
                              learned_at=(min(2 * steps_per_epoch,
                                              c.num_steps),),
                              **schedule),
      'shares': measurement('loss_shares', **schedule),
  })
  return c


def imagenet_runlocal(c, a, batch: int = 16) -> ml_collections.ConfigDict:
  """A smoke run of an ImageNet config on prepared (e.g. fake) data: at the
  model's smallest input size, `batch`, at most 2 epochs of the fake
  ImageNet's 32 training examples (or of `train_examples`: 4 steps at batch
  16), tiny measurement samples, everything measured every epoch
  (learned_at: at 2 epochs, the end), decoded without worker processes."""
  c.data.image_size = IMAGENET_MODELS[a.model][3]
  # A few hundred small images per pass: decoded here in milliseconds, where
  # worker processes take ~2.5 s to start for each evaluation and probe set.
  c.data.workers = 0
  c.batch_size = batch
  steps_per_epoch = epoch_steps(a, c.batch_size)
  c.num_steps = min(a.epochs, 2) * steps_per_epoch
  c.log_every = c.checkpoint_every = steps_per_epoch
  for m in c.measurements.values():
    m.update(every=steps_per_epoch, num_log_spaced=0)
  c.measurements.eval.update(batch_size=16, sizes={
      'train': 64, 'clean': 64, 'noisy': 64, 'test': 0})
  c.measurements.probe.update(m=8, microbatch_size=4)
  c.measurements.learning.update(examples=0, batch_size=16,
                                 learned_at=(c.num_steps,))
  return c


CIFAR10_TRAIN_EXAMPLES = 50_000
# The fake CIFAR-10's (cgjax/data/fake_cifar10.py), for runlocal.
FAKE_CIFAR10_TRAIN_EXAMPLES = 64
# name: (cgjax model, kwargs, the layers followed: first conv, an
# intermediate one, the final dense). 32 x 32 inputs: ResNet's 3x3 stem
# without max-pool; VGG's classifier 512 wide, as CIFAR VGGs are.
CIFAR10_MODELS = {
    'resnet18': ('resnet', {'depth': 18, **RESNET, 'small_inputs': True},
                 ('stem_conv/kernel', 'stage3_block0/conv1/kernel',
                  'head/kernel')),
    'vgg13_bn': ('vgg', {'depth': 13, 'width': 64, 'hidden': 512,
                         'dropout': 0.5, 'dtype': 'float32'},
                 ('block1_conv0/kernel', 'block3_conv0/kernel',
                  'head/kernel')),
}


def cifar10_config(a, *, batch: int, lr: float, momentum: float,
                   probe_m: int) -> ml_collections.ConfigDict:
  """CIFAR-10 (prepared TFDS cifar10) with label noise, for `a` from
  parse_arg with fields model, noise, seed, epochs, train_examples,
  runlocal: no augmentation, no weight decay, SGD, `a.epochs` epochs;
  measurements every epoch and at 20 log-spaced steps: evaluation on 10,000
  mixed, clean and noisy training examples and the test split, m-coherence
  probes of `probe_m` per set (norms, the full statistics at every 10th
  probe), learning times of 10,000 examples and every example at 2 epochs,
  loss shares. runlocal: at most 2 epochs of the fake CIFAR-10's 64
  examples, tiny samples."""
  if a.model not in CIFAR10_MODELS:
    raise ValueError(f'model={a.model!r}; choose from '
                     f'{", ".join(CIFAR10_MODELS)}')
  name, kwargs, layers = CIFAR10_MODELS[a.model]
  c = base_config()
  c.seed = a.seed
  c.data.name = 'tfds:cifar10'
  c.noise.rate = a.noise
  c.model.update(name=name, kwargs=dict(kwargs))
  steps_per_epoch = epoch_steps(a, batch, CIFAR10_TRAIN_EXAMPLES,
                                FAKE_CIFAR10_TRAIN_EXAMPLES)
  c.batch_size = batch
  c.num_steps = (min(a.epochs, 2) if a.runlocal else a.epochs) * (
      steps_per_epoch)
  c.optim.update(name='sgd', lr=lr, momentum=momentum, weight_decay=0.0)
  c.log_every = min(50, steps_per_epoch)
  c.checkpoint_every = steps_per_epoch
  schedule = dict(every=steps_per_epoch,
                  num_log_spaced=0 if a.runlocal else 20)
  size = 16 if a.runlocal else 10_000
  c.measurements = ml_collections.ConfigDict({
      'eval': measurement('evaluation', batch_size=16 if a.runlocal else 1000,
                          sizes={'train': size, 'clean': size,
                                 'noisy': size, 'test': 0}, **schedule),
      'probe': measurement('coherence', m=8 if a.runlocal else probe_m,
                           microbatch_size=4 if a.runlocal else 64,
                           sets=('clean', 'noisy', 'train', 'test'),
                           statistics='norms', all_every=10, layers=layers,
                           **schedule),
      'learning': measurement('learning_times',
                              examples=0 if a.runlocal else 10_000,
                              batch_size=16 if a.runlocal else 1000,
                              learned_at=(min(2 * steps_per_epoch,
                                              c.num_steps),), **schedule),
      'shares': measurement('loss_shares', **schedule),
  })
  return c


def weak_and_strong_optim(c, a, steps_per_epoch: int):
  """The Weak-and-Strong trainer's optimizer for `a.optimizer` and
  `a.model`: M3 / RM3 / RA3 with no update before a third gradient, weight
  decay `a.weight_decay`, ResNets /10 every 30 epochs counted from the
  start (StepLR(30): at 30 and 60 of 90, never in a 2-epoch selection run),
  other models cosine, the lr changing once an epoch (torch's
  schedulers)."""
  if a.optimizer != 'sgd':
    c.optim.update(aggregator=a.optimizer, m3_groups=3, rm3_warmup='skip')
  c.optim.weight_decay = a.weight_decay
  if a.model == 'resnet18':
    c.optim.update(schedule='step', step_size=30, step_factor=0.1)
  else:
    c.optim.schedule = 'cosine'
  c.optim.schedule_every = steps_per_epoch


def _descriptions() -> dict[str, str]:
  """{field: description} from this module's docstring: an entry starts
  two spaces in, its description continues on deeper-indented lines; the
  measurement schedule fields ('.every') are keyed 'schedule.every'."""
  out, name = {}, None
  body = __doc__.split('documented once here:', 1)[1]
  body = body.split('    Types and their fields', 1)[0]
  for line in body.splitlines():
    entry = re.match(r'^  (\S+)\s+(.*)$', line)
    schedule = re.match(r'^ {6}\.(\w+)\s+(.*)$', line)
    if schedule:
      name = f'schedule.{schedule.group(1)}'
      out[name] = schedule.group(2)
    elif entry:
      name = entry.group(1)
      out[name] = entry.group(2)
    elif name and line.strip():
      out[name] += ' ' + line.strip()
  return out


def reference(config=None) -> str:
  """The config reference (Markdown): every field of `config` (default:
  base_config()) with its default and description, then the measurement
  schedule and each built-in measurement type's fields. Raises ValueError
  naming any field the docstring does not document."""
  from cgjax import coherence  # pylint: disable=g-import-not-at-top
  from cgjax import measurements  # pylint: disable=g-import-not-at-top
  config = config or base_config()
  described = _descriptions()
  fields = coherence.flatten({k: v for k, v in config.to_dict().items()
                              if k != 'measurements'}, sep='.')
  fields = {('model.kwargs' if k.startswith('model.kwargs') else k): v
            for k, v in fields.items()}
  fields.setdefault('model.kwargs', {})
  missing = sorted(set(fields) - set(described))
  if missing:
    raise ValueError(f'config fields without a description in '
                     f'configs/common.py: {missing}')
  cell = lambda text: str(text).replace('|', '\\|')
  lines = ['# Config reference', '',
           'Generated by `python -m configs.common > docs/config.md` from '
           'the docstring and defaults of `configs/common.py` and the '
           'measurement modules; every config file starts from these '
           'defaults (`common.base_config()`), and any field can be '
           'overridden on the command line: `--config.optim.lr=0.05`.', '',
           '| field | default | meaning |', '|---|---|---|']
  lines += [f'| `{k}` | `{cell(repr(v))}` | {cell(described[k])} |'
            for k, v in fields.items()]
  lines += ['', '## measurements', '', cell(described['measurements']), '',
            '### Schedule fields (every measurement)', '',
            '| field | default | meaning |', '|---|---|---|']
  lines += [f'| `{k}` | `{v!r}` | {cell(described.get("schedule." + k, ""))} |'
            for k, v in measurements.SCHEDULE.items() if k != 'type']
  for type_name in measurements.BUILTIN:
    module = importlib.import_module(f'cgjax.measurements.{type_name}')
    text = module.__doc__.split('Fields:', 1)
    lines += ['', f'### `type={type_name!r}` (cgjax/measurements/'
              f'{type_name}.py)', '', module.__doc__.split('\n', 1)[0], '',
              'Defaults: ' + ', '.join(f'`{k}={v!r}`' for k, v in
                                       _plain(module.FIELDS).items()), '']
    if len(text) > 1:
      lines += ['```', text[1].strip('\n').rstrip(), '```']
  return '\n'.join(lines) + '\n'


def _plain(fields) -> dict:
  return {k: v.to_dict() if hasattr(v, 'to_dict') else v
          for k, v in fields.items()}


if __name__ == '__main__':
  print(reference(), end='')
