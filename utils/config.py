"""Experiment configuration: defaults <- YAML file <- command-line flags, resolved once.

The resolved `Config` is frozen and saved in the run directory (utils/rundir.py) so that later
jobs read it instead of repeating flags. Unknown keys and wrong types are errors. Each key's
meaning is its `--help` text, defined with the key below.

    cfg = resolve_config('configs/camvid_fcn8s.yaml', {'batch_size': '2', 'crop_size': '160,224'})
"""
import dataclasses
import os
import typing

import yaml

from nets import MODELS, NETWORK_ARGS, accepted_args
from nets.fcn import HEAD_SCOPE
from nets.mobilenet_v1 import settings_problem as mobilenet_settings_problem
from utils import crf as crf_defaults
from utils.cli import split_list
from utils.data.records import IGNORE_LABEL
from utils.errors import ConfigError
from utils.fileio import atomic_write_text

# What a job without a class table (conversion, operation counts) leaves out of its config:
# the per-class entries.
CLASS_TABLE_KEYS = ('class_names', 'class_colors', 'class_weights')


def _section(title):
    """A field maker whose fields carry `--help` text and their section of the help."""
    def key(default=dataclasses.MISSING, help='', factory=dataclasses.MISSING):
        return dataclasses.field(default=default, default_factory=factory,
                                 metadata={'help': help, 'section': title})
    return key


_dataset = _section('dataset and its labels')
_data = _section('data and augmentation')
_model = _section('model')
_optim = _section('optimisation')
_init = _section('initialisation and checkpoints')
_parallel = _section('data parallelism')
_validation = _section('logging, validation and dense CRF')
Ints = typing.Tuple[int, ...]


# The dense CRF's settings (utils.crf.dense_crf's keyword arguments, Config.crf_params()).
CRF_KEYS = ('crf_iterations', 'crf_bilateral_compat', 'crf_bilateral_sxy', 'crf_bilateral_srgb',
            'crf_gaussian_compat', 'crf_gaussian_sxy')
# Those a CRF search (evaluate.py --crf_search) varies.
CRF_SEARCH_KEYS = CRF_KEYS[1:5]


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of an experiment; YAML keys and `--KEY` flags have these names."""
    dataset_name: str = _dataset('dataset', 'name shown in logs and reports')
    num_classes: int = _dataset(21, 'number of classes (void not counted)')
    class_names: typing.Tuple[str, ...] = _dataset((), 'one name per class, e.g. sky,road,car')
    class_colors: typing.Tuple[Ints, ...] = _dataset(
        (), 'one R,G,B (0..255) per class for the pictures, e.g. "128,128,128;128,0,0"')
    void_label: int = _dataset(IGNORE_LABEL, "value of void pixels in the dataset's label files "
                               'on disk (stored as %d in the records)' % IGNORE_LABEL)
    label_map: typing.Dict[int, int] = _dataset(
        help='on-disk id -> train id, e.g. "7:0,8:1" (Cityscapes); unlisted ids become '
        'label_map_default', factory=dict)
    label_map_default: int = _dataset(IGNORE_LABEL, 'train id of on-disk ids missing from '
                                      'label_map')
    label_offset: int = _dataset(0, 'added to on-disk ids when there is no label_map '
                                 '(ADE20K: -1)')
    color_map: typing.Tuple[Ints, ...] = _dataset(
        (), 'colour-coded labels: "r,g,b,train_id;..." per colour (KITTI road)')
    dataset_train: str = _data('', 'training TFRecord file(s): comma-separated or glob')
    dataset_val: str = _data('', 'validation TFRecord file(s); empty: no validation')
    crop_size: Ints = _data((320, 320), 'training crop HEIGHT,WIDTH (both >= 32)')
    min_scale: float = _data(1.0, 'smallest random rescaling of a training image')
    max_scale: float = _data(1.0, 'largest random rescaling of a training image')
    random_flip: bool = _data(True, 'random left-right flips in training')
    photometric_jitter: bool = _data(False, 'random brightness/contrast/saturation/hue in '
                                     'training')
    shuffle_buffer: int = _data(256, 'records shuffled together')
    model: str = _model('fcn8s', 'network: one of nets.MODELS')
    fc_depth: int = _model(4096, 'depth of VGG fc6/fc7; 4096 (VGG16\'s) to load vgg_16.ckpt\'s '
                           'fc6/fc7')
    dropout_keep_prob: float = _model(0.5, 'keep probability of the dropout layers')
    weight_decay: float = _model(5e-4, 'L2 weight decay')
    batch_norm_decay: float = _model(0.9997, 'decay of the batch-norm moving averages '
                                     '(MobileNet, Inception) in training; 0.9997 (slim\'s) '
                                     'averages ~3300 steps: lower it for short runs from '
                                     'scratch')
    depth_multiplier: float = _model(1.0, 'MobileNet / Inception channel multiplier')
    final_endpoint: str = _model('Conv2d_13_pointwise', 'MobileNet layer the head starts from')
    classifier_kernel: int = _model(7, 'MobileNet FCN head: depthwise kernel size')
    classifier_depth: int = _model(1024, 'MobileNet FCN head: pointwise depth')
    at_once: bool = _model(False, 'FCN-8s at-once: scale pool4 by 0.01 and pool3 by 0.0001')
    learn_upsampling: bool = _model(True, 'false: transposed convs stay fixed bilinear')
    precision: str = _model('auto', 'auto (mixed_bfloat16 on CPUs with bfloat16 units and no '
                            'GPU, else float32) | float32 | mixed_bfloat16 (CPU, oneDNN) | '
                            'mixed_float16 (GPU)')
    batch_size: int = _optim(4, 'images per step (the global batch with several replicas)')
    max_steps: int = _optim(1000, 'training ends at this step')
    optimizer: str = _optim('adam', 'adam | momentum | rmsprop')
    learning_rate: float = _optim(1e-4, 'base learning rate')
    momentum: float = _optim(0.9, 'momentum of momentum and rmsprop')
    lr_schedule: str = _optim('fixed', 'fixed | step | poly')
    lr_decay_steps: int = _optim(1000, 'step: multiply by lr_decay_rate every lr_decay_steps')
    lr_decay_rate: float = _optim(0.1, 'step: the factor')
    lr_power: float = _optim(0.9, 'poly: lr * (1 - step / max_steps) ** lr_power')
    warmup_steps: int = _optim(0, 'linear ramp from 0 to the schedule\'s value')
    gradient_clip_norm: float = _optim(0.0, 'clip gradients to this global norm; 0: no clipping')
    bias_lr_multiplier: float = _optim(1.0, 'learning rate factor of biases (the reference '
                                       'FCN recipe: 2)')
    backbone_lr_multiplier: float = _optim(1.0, 'learning rate factor of the pretrained '
                                           'backbone (every variable outside the head)')
    loss_normalization: str = _optim('mean', 'mean over labelled pixels | sum (reference FCN '
                                     'recipe)')
    hard_pixel_fraction: float = _optim(1.0, '< 1: only the hardest fraction of pixels count')
    class_weights: typing.Tuple[float, ...] = _optim((), 'one loss weight per class; empty: '
                                                     'all 1')
    class_weights_report: str = _optim('', 'converter report whose median_frequency_weights '
                                       'to use')
    seed: int = _optim(0, 'graph-level random seed')
    checkpoint_path: str = _init('', 'pretrained checkpoint (e.g. vgg_16.ckpt) for a new run')
    checkpoint_exclude_scopes: typing.Tuple[str, ...] = _init(
        ('vgg_16/fc8',), 'checkpoint scopes not restored (the classifier)')
    trainable_scopes: typing.Tuple[str, ...] = _init((), 'scopes that train; empty: all')
    stage1_steps: int = _init(0, 'two-stage fine-tuning: first train only '
                              'stage1_trainable_scopes for this many steps')
    stage1_trainable_scopes: typing.Tuple[str, ...] = _init((HEAD_SCOPE,), 'what trains in '
                                                            'stage one')
    output_dir: str = _init('', 'run directory (utils/rundir.py); a rerun resumes from it')
    save_every: int = _init(500, 'save a checkpoint every this many steps')
    save_every_seconds: int = _init(0, 'also save when this long has passed since the last '
                                    'save; 0: off')
    keep_checkpoints: int = _init(2, 'newest checkpoints kept (each with optimiser state), plus '
                                  'the best (weights only)')
    deterministic: bool = _init(False, 'deterministic kernels (reproducible, slower)')
    distribution: str = _parallel('none', 'none | mirrored (several local GPUs or CPUs) | '
                                  'multi_worker (machines of the TF_CONFIG variable)')
    devices: typing.Tuple[str, ...] = _parallel((), 'mirrored: e.g. /gpu:0,/gpu:1; empty: all '
                                                'local GPUs')
    log_every: int = _validation(10, 'log loss and images/s every this many steps')
    eval_every: int = _validation(500, 'validate every this many steps')
    num_eval_images: int = _validation(0, 'images scored and drawn per validation; 0: all')
    crf: bool = _validation(True, 'also score and draw the dense-CRF-refined prediction')
    crf_iterations: int = _validation(5, 'mean-field iterations of the CRF')
    crf_bilateral_compat: float = _validation(crf_defaults.BILATERAL_COMPAT, 'CRF appearance '
                                              'kernel weight (w1)')
    crf_bilateral_sxy: float = _validation(crf_defaults.BILATERAL_SXY, 'CRF appearance kernel '
                                           'width in pixels (theta_alpha)')
    crf_bilateral_srgb: float = _validation(crf_defaults.BILATERAL_SRGB, 'CRF appearance '
                                            'kernel colour width (theta_beta)')
    crf_gaussian_compat: float = _validation(crf_defaults.GAUSSIAN_COMPAT, 'CRF smoothness '
                                             'kernel weight (w2)')
    crf_gaussian_sxy: float = _validation(crf_defaults.GAUSSIAN_SXY, 'CRF smoothness kernel '
                                          'width (theta_gamma)')
    overlay_alpha: float = _validation(0.5, 'opacity of the class colours in overlays')

    def __post_init__(self):  # also after dataclasses.replace
        self.validate()

    def validate(self):
        """Raises ConfigError for values no run can use."""
        self._validate_numbers()
        self._validate_crf()
        self._validate_network()
        self._validate_choices()
        self._validate_labels()
        return self

    def _validate_numbers(self):
        positive = ['num_classes', 'batch_size', 'max_steps', 'fc_depth', 'save_every',
                    'eval_every', 'log_every', 'keep_checkpoints', 'shuffle_buffer']
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError('%s must be positive, got %r' % (name, getattr(self, name)))
        if len(self.crop_size) != 2 or min(self.crop_size) < 32:
            raise ConfigError('crop_size must be HEIGHT,WIDTH with both >= 32 (the network '
                              'stride), got %r' % (self.crop_size,))
        if self.batch_size * self.crop_size[0] * self.crop_size[1] * 64 >= 2 ** 31:
            raise ConfigError('batch_size %d of %dx%d crops is beyond what one step can hold '
                              '(the first layer alone would have over 2^31 values); lower '
                              'batch_size or crop_size' % ((self.batch_size,) + self.crop_size))
        if not 0 < self.min_scale <= self.max_scale:
            raise ConfigError('need 0 < min_scale <= max_scale, got %r, %r'
                              % (self.min_scale, self.max_scale))
        if not 0 < self.dropout_keep_prob <= 1:
            raise ConfigError('dropout_keep_prob must be in (0, 1], got %r'
                              % self.dropout_keep_prob)
        if not 0 <= self.batch_norm_decay < 1:
            raise ConfigError('batch_norm_decay must be in [0, 1), got %r'
                              % self.batch_norm_decay)
        if not 0 < self.learning_rate < float('inf'):
            raise ConfigError('learning_rate must be a positive finite rate, got %r'
                              % self.learning_rate)
        if not 0 <= self.momentum < 1:
            raise ConfigError('momentum must be in [0, 1), got %r' % self.momentum)
        if not 0 <= self.weight_decay < float('inf'):
            raise ConfigError('weight_decay must be >= 0 and finite, got %r (0: no decay)'
                              % self.weight_decay)
        if self.class_weights and not (all(0 <= w < float('inf') for w in self.class_weights)
                                       and any(w > 0 for w in self.class_weights)):
            raise ConfigError('class_weights must be finite and >= 0, at least one above 0; '
                              'got %s' % (list(self.class_weights),))
        for name in ('bias_lr_multiplier', 'backbone_lr_multiplier'):
            if getattr(self, name) <= 0:
                raise ConfigError('%s must be positive, got %r (to freeze variables, set '
                                  'trainable_scopes)' % (name, getattr(self, name)))
        if (self.precision == 'mixed_float16' and self.optimizer != 'momentum'
                and (self.bias_lr_multiplier, self.backbone_lr_multiplier) != (1.0, 1.0)):
            raise ConfigError('bias_lr_multiplier and backbone_lr_multiplier need optimizer '
                              'momentum under precision mixed_float16 (one loss scale for '
                              'all variables); set them to 1 or use momentum')
        if not 0 < self.hard_pixel_fraction <= 1:
            raise ConfigError('hard_pixel_fraction must be in (0, 1], got %r'
                              % self.hard_pixel_fraction)
        for name in ('warmup_steps', 'stage1_steps', 'save_every_seconds', 'num_eval_images'):
            if getattr(self, name) < 0:
                raise ConfigError('%s must be >= 0, got %r' % (name, getattr(self, name)))

    def _validate_crf(self):
        if self.crf_iterations < 1:
            raise ConfigError('crf_iterations must be >= 1, got %r' % self.crf_iterations)
        for name in ('crf_bilateral_compat', 'crf_gaussian_compat'):
            if not 0 <= getattr(self, name) < float('inf'):
                raise ConfigError('%s (a kernel weight) must be >= 0, got %r'
                                  % (name, getattr(self, name)))
        for name in ('crf_bilateral_sxy', 'crf_bilateral_srgb', 'crf_gaussian_sxy'):
            if not 0 < getattr(self, name) < float('inf'):
                raise ConfigError('%s (a kernel width) must be > 0, got %r'
                                  % (name, getattr(self, name)))
        if not 0 <= self.overlay_alpha <= 1:
            raise ConfigError('overlay_alpha must be in [0, 1], got %r' % self.overlay_alpha)

    def _validate_network(self):
        if self.model not in MODELS:
            raise ConfigError('model must be one of %s, got %r' % (', '.join(MODELS), self.model))
        problem = mobilenet_settings_problem(self.model, self.final_endpoint)
        if problem:
            raise ConfigError(problem)
        if self.depth_multiplier <= 0:  # MobileNet and Inception FCNs
            raise ConfigError('depth_multiplier must be positive, got %r' % self.depth_multiplier)

    def _validate_choices(self):
        choices = {'optimizer': ('adam', 'momentum', 'rmsprop'),
                   'lr_schedule': ('fixed', 'step', 'poly'),
                   'loss_normalization': ('mean', 'sum'),
                   'precision': ('auto', 'float32', 'mixed_bfloat16', 'mixed_float16'),
                   'distribution': ('none', 'mirrored', 'multi_worker')}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError('%s must be one of %s, got %r'
                                  % (name, ', '.join(allowed), getattr(self, name)))

    def _validate_labels(self):
        for name in ('void_label', 'label_map_default'):
            if not 0 <= getattr(self, name) <= 255:
                raise ConfigError('%s must be in 0..255 (labels are stored as 8-bit), got %r'
                                  % (name, getattr(self, name)))
        for source, target in self.label_map.items():
            if not (0 <= source <= 255 and (0 <= target < self.num_classes
                                             or target == IGNORE_LABEL)):
                raise ConfigError('label_map %d:%d must map an on-disk id 0..255 to a class '
                                  '0..%d or %d (void)' % (source, target, self.num_classes - 1,
                                                          IGNORE_LABEL))
        for name in ('class_colors', 'color_map'):
            for entry in getattr(self, name):
                if entry and not all(0 <= v <= 255 for v in entry[:3]):
                    raise ConfigError('%s entries need R,G,B values in 0..255, got %r'
                                      % (name, list(entry)))
        for entry in self.color_map:
            if len(entry) != 4:
                raise ConfigError('color_map entries must be [r, g, b, train_id], got %r'
                                  % (list(entry),))
        if self.class_colors and len(self.class_colors) != self.num_classes:
            raise ConfigError('class_colors has %d entries but num_classes is %d'
                              % (len(self.class_colors), self.num_classes))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError('class_names has %d entries but num_classes is %d'
                              % (len(self.class_names), self.num_classes))
        if self.class_weights and len(self.class_weights) != self.num_classes:
            raise ConfigError('class_weights has %d entries but num_classes is %d'
                              % (len(self.class_weights), self.num_classes))

    def network_args(self):
        """Keyword arguments of nets.build_network that define the network (not training)."""
        return {'model': self.model, **{name: getattr(self, name) for name in NETWORK_ARGS}}

    def network_description(self):
        """'fcn8s (fc_depth 1024, ...)': the model with the settings this network takes (a
        MobileNet has no fc_depth), for logs and reports."""
        return '%s (%s)' % (self.model, ', '.join('%s %s' % (name, getattr(self, name))
                                                  for name in accepted_args(self.model)))

    def crf_params(self):
        """Keyword arguments of utils.crf.dense_crf: the CRF_KEYS and their values (one name
        per setting, from the config to the search's JSON and the flags)."""
        return {name: getattr(self, name) for name in CRF_KEYS}

    def to_dict(self):
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value):
    """Tuples to lists, recursively, so that YAML stays readable."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_HINTS = typing.get_type_hints(Config)


def _coerce(name, value, hint, from_string):
    """Converts `value` to the type `hint`; strings from flags are parsed, YAML values checked."""
    origin = typing.get_origin(hint)
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if from_string:  # "7:0,8:1"
            try:
                value = dict(item.split(':') for item in split_list(value))
            except ValueError:
                raise ConfigError('%s must be KEY:VALUE,KEY:VALUE, got %r'
                                  % (name, value)) from None
        if not isinstance(value, dict):
            raise ConfigError('%s must be a mapping, got %r' % (name, value))
        return {_coerce(name, k, key_hint, from_string): _coerce(name, v, value_hint, from_string)
                for k, v in value.items()}
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if from_string:
            text = value.strip()
            if typing.get_origin(item_hint) is tuple:  # e.g. colours: "1,2,3;4,5,6"
                value = split_list(text, ';')
            else:
                value = split_list(text)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError('%s must be a list, got %r' % (name, value))
        return tuple(_coerce(name, v, item_hint, from_string) for v in value)
    if hint is bool:
        if from_string:
            lowered = value.strip().lower()
            if lowered in ('1', 'true', 'yes', 'on'):
                return True
            if lowered in ('0', 'false', 'no', 'off'):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError('%s must be true or false, got %r' % (name, value))
    if hint in (int, float):
        if from_string:
            try:
                return hint(value.strip())
            except ValueError:
                raise ConfigError('%s must be %s, got %r' % (name, hint.__name__, value)) from None
        if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError('%s must be %s, got %r' % (name, hint.__name__, value))
        if hint is int and not float(value).is_integer():
            raise ConfigError('%s must be an integer, got %r' % (name, value))
        return hint(value)
    if hint is str:
        if value is None:
            return ''
        if not isinstance(value, str):
            raise ConfigError('%s must be a string, got %r' % (name, value))
        return value
    raise TypeError('unsupported config type %r for %s' % (hint, name))


def _apply(values, updates, from_string, source):
    for name, value in updates.items():
        if name not in _FIELDS:
            raise ConfigError('unknown config key %r in %s; valid keys: %s'
                              % (name, source, ', '.join(sorted(_FIELDS))))
        values[name] = _coerce(name, value, _HINTS[name], from_string)


def load_yaml(path):
    """Reads a YAML mapping, with errors that name the file."""
    if not os.path.isfile(path):
        raise ConfigError('config file %s does not exist' % path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError('config file %s is not valid YAML: %s' % (path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError('config file %s must hold a mapping of key: value' % path)
    return data


def resolve_config(config_path=None, overrides=None, class_table=True):
    """Defaults <- YAML at `config_path` <- `overrides` (flag strings). Returns a valid Config.

    A job with no use for the per-class entries (names, colours, loss weights: conversion,
    operation counts) passes `class_table=False`: the YAML's, which need not fit an overridden
    num_classes, are left out.
    """
    values = {}
    if config_path:
        _apply(values, load_yaml(config_path), False, config_path)
    _apply(values, overrides or {}, True, 'the command-line flags')
    if not class_table:
        for name in CLASS_TABLE_KEYS:
            values.pop(name, None)
    return Config(**values)  # validated as it is made


def save_config(config, path):
    """Writes the resolved config as YAML to `path` (atomically); returns the path."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def add_config_flags(parser, keys=None):
    """Adds `--KEY` for every config key (or those in `keys`) to an argparse parser, grouped
    by section, each with its help text and default."""
    groups = {}
    for name, field in _FIELDS.items():
        if keys is not None and name not in keys:
            continue
        section = field.metadata['section']
        if section not in groups:
            groups[section] = parser.add_argument_group('config: ' + section)
        default = (field.default_factory() if field.default is dataclasses.MISSING
                   else field.default)
        groups[section].add_argument('--' + name, default=None, metavar=name.upper(),
                                     help='%s (default: %s)' % (field.metadata['help'],
                                                                _plain(default)))


def overrides_from_args(args):
    """The config keys given on the command line, as {key: string}."""
    return {name: getattr(args, name) for name in _FIELDS
            if getattr(args, name, None) is not None}
