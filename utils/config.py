"""Experiment configuration: defaults <- YAML file <- command-line flags, resolved once.

The resolved `Config` is frozen and saved next to the checkpoints (`OUTPUT_DIR/config.yaml`) so
that later jobs read it instead of repeating flags. Unknown keys and wrong types are errors.

    cfg = resolve_config('configs/camvid_fcn8s.yaml', {'batch_size': '2', 'crop_size': '160,224'})
"""
import dataclasses
import os
import typing

import yaml

from utils import crf as crf_defaults
from utils.fileio import atomic_write_text
from utils.tfrecord import IGNORE_LABEL  # void label of every record this suite writes

CONFIG_FILENAME = 'config.yaml'


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Config:
    # Dataset description.
    dataset_name: str = 'dataset'
    num_classes: int = 21
    class_names: typing.Tuple[str, ...] = ()
    class_colors: typing.Tuple[typing.Tuple[int, ...], ...] = ()
    void_label: int = IGNORE_LABEL  # value of void pixels in the dataset's label files on disk
    # Conversion of on-disk labels to train ids (see utils/datasets.label_lookup_table).
    label_map: typing.Dict[int, int] = dataclasses.field(default_factory=dict)  # id -> train id
    label_map_default: int = IGNORE_LABEL  # train id of on-disk ids missing from label_map
    label_offset: int = 0  # added to on-disk ids without a label_map (ADE20K: -1)
    color_map: typing.Tuple[typing.Tuple[int, ...], ...] = ()  # [r, g, b, train id] per colour
    # Data and augmentation.
    dataset_train: str = ''
    dataset_val: str = ''
    crop_size: typing.Tuple[int, ...] = (320, 320)  # height, width
    min_scale: float = 1.0
    max_scale: float = 1.0
    random_flip: bool = True
    photometric_jitter: bool = False  # random brightness/contrast/saturation/hue (training only)
    shuffle_buffer: int = 256
    # Model.
    model: str = 'fcn8s'
    fc_depth: int = 4096  # depth of fc6/fc7; 4096 is VGG16's and needed to load vgg_16.ckpt fc6/fc7
    dropout_keep_prob: float = 0.5
    weight_decay: float = 5e-4
    depth_multiplier: float = 1.0  # MobileNet / Inception channel multiplier
    final_endpoint: str = 'Conv2d_13_pointwise'  # MobileNet layer the head starts from
    classifier_kernel: int = 7  # MobileNet FCN head: depthwise kernel size
    classifier_depth: int = 1024  # MobileNet FCN head: pointwise depth
    at_once: bool = False  # FCN-8s at-once: scale pool4 by 0.01 and pool3 by 0.0001
    learn_upsampling: bool = True  # False: transposed convs stay fixed bilinear
    precision: str = 'float32'  # float32 | mixed_bfloat16 (CPU, oneDNN) | mixed_float16 (GPU)
    # Optimisation.
    batch_size: int = 4
    max_steps: int = 1000
    optimizer: str = 'adam'  # adam | momentum | rmsprop
    learning_rate: float = 1e-4
    momentum: float = 0.9
    lr_schedule: str = 'fixed'  # fixed | step | poly
    lr_decay_steps: int = 1000  # step: multiply by lr_decay_rate every lr_decay_steps
    lr_decay_rate: float = 0.1
    lr_power: float = 0.9  # poly: lr * (1 - step / max_steps) ** lr_power
    warmup_steps: int = 0  # linear ramp from 0 to the schedule's value
    gradient_clip_norm: float = 0.0  # 0: no clipping
    bias_lr_multiplier: float = 1.0  # the reference FCN recipe trains biases at 2x lr
    loss_normalization: str = 'mean'  # mean over labelled pixels | sum (reference FCN recipe)
    hard_pixel_fraction: float = 1.0  # < 1: only the hardest fraction of pixels count
    class_weights: typing.Tuple[float, ...] = ()  # empty: every class weighs 1
    class_weights_report: str = ''  # converter report whose median_frequency_weights to use
    seed: int = 0
    # Initialisation and checkpoints.
    checkpoint_path: str = ''
    checkpoint_exclude_scopes: typing.Tuple[str, ...] = ('vgg_16/fc8',)
    trainable_scopes: typing.Tuple[str, ...] = ()  # empty: every variable trains
    stage1_steps: int = 0  # two-stage fine-tuning: first train only stage1_trainable_scopes
    stage1_trainable_scopes: typing.Tuple[str, ...] = ('fcn',)
    output_dir: str = ''
    save_every: int = 500
    save_every_seconds: int = 0  # also save when this long has passed since the last save
    keep_checkpoints: int = 5
    deterministic: bool = False  # deterministic kernels (reproducible, slower)
    # Data parallelism (tf.distribute): none | mirrored (several local GPUs, or CPUs) |
    # multi_worker (several machines, from the TF_CONFIG environment variable).
    distribution: str = 'none'
    devices: typing.Tuple[str, ...] = ()  # mirrored: e.g. /gpu:0,/gpu:1 (empty: all local GPUs)
    # Logging and validation.
    log_every: int = 10
    eval_every: int = 500
    num_eval_images: int = 0  # images scored and drawn at each validation; 0 = all
    crf: bool = True
    crf_iterations: int = 5
    crf_bilateral_compat: float = crf_defaults.BILATERAL_COMPAT  # w1
    crf_bilateral_sxy: float = crf_defaults.BILATERAL_SXY  # theta_alpha
    crf_bilateral_srgb: float = crf_defaults.BILATERAL_SRGB  # theta_beta
    crf_gaussian_compat: float = crf_defaults.GAUSSIAN_COMPAT  # w2
    crf_gaussian_sxy: float = crf_defaults.GAUSSIAN_SXY  # theta_gamma
    overlay_alpha: float = 0.5

    def validate(self):
        """Raises ConfigError for values no run can use."""
        positive = ['num_classes', 'batch_size', 'max_steps', 'fc_depth', 'save_every',
                    'eval_every', 'log_every', 'keep_checkpoints', 'shuffle_buffer']
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError('%s must be positive, got %r' % (name, getattr(self, name)))
        if len(self.crop_size) != 2 or min(self.crop_size) < 32:
            raise ConfigError('crop_size must be HEIGHT,WIDTH with both >= 32 (the network '
                              'stride), got %r' % (self.crop_size,))
        from nets import MODELS
        if self.model not in MODELS:
            raise ConfigError('model must be one of %s, got %r' % (', '.join(MODELS), self.model))
        if not 0 < self.min_scale <= self.max_scale:
            raise ConfigError('need 0 < min_scale <= max_scale, got %r, %r'
                              % (self.min_scale, self.max_scale))
        if not 0 < self.dropout_keep_prob <= 1:
            raise ConfigError('dropout_keep_prob must be in (0, 1], got %r' % self.dropout_keep_prob)
        if self.learning_rate <= 0:
            raise ConfigError('learning_rate must be positive, got %r' % self.learning_rate)
        choices = {'optimizer': ('adam', 'momentum', 'rmsprop'),
                   'lr_schedule': ('fixed', 'step', 'poly'),
                   'loss_normalization': ('mean', 'sum'),
                   'precision': ('float32', 'mixed_bfloat16', 'mixed_float16'),
                   'distribution': ('none', 'mirrored', 'multi_worker')}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError('%s must be one of %s, got %r'
                                  % (name, ', '.join(allowed), getattr(self, name)))
        if not 0 < self.hard_pixel_fraction <= 1:
            raise ConfigError('hard_pixel_fraction must be in (0, 1], got %r'
                              % self.hard_pixel_fraction)
        for name in ('warmup_steps', 'stage1_steps', 'save_every_seconds'):
            if getattr(self, name) < 0:
                raise ConfigError('%s must be >= 0, got %r' % (name, getattr(self, name)))
        if self.num_eval_images < 0:
            raise ConfigError('num_eval_images must be >= 0 (0 = all), got %r'
                              % self.num_eval_images)
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
        return self

    def network_args(self):
        """Keyword arguments of nets.build_network that define the network (not training)."""
        return {'model': self.model, 'weight_decay': self.weight_decay,
                'fc_depth': self.fc_depth, 'at_once': self.at_once,
                'learn_upsampling': self.learn_upsampling,
                'depth_multiplier': self.depth_multiplier, 'final_endpoint': self.final_endpoint,
                'classifier_kernel': self.classifier_kernel,
                'classifier_depth': self.classifier_depth}

    def crf_params(self):
        """Keyword arguments of utils.crf.dense_crf."""
        return {'iterations': self.crf_iterations,
                'bilateral_compat': self.crf_bilateral_compat,
                'bilateral_sxy': self.crf_bilateral_sxy,
                'bilateral_srgb': self.crf_bilateral_srgb,
                'gaussian_compat': self.crf_gaussian_compat,
                'gaussian_sxy': self.crf_gaussian_sxy}

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
                value = dict(item.split(':') for item in value.split(',') if item.strip())
            except ValueError:
                raise ConfigError('%s must be KEY:VALUE,KEY:VALUE, got %r' % (name, value)) from None
        if not isinstance(value, dict):
            raise ConfigError('%s must be a mapping, got %r' % (name, value))
        return {_coerce(name, k, key_hint, from_string): _coerce(name, v, value_hint, from_string)
                for k, v in value.items()}
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if from_string:
            text = value.strip()
            if typing.get_origin(item_hint) is tuple:  # e.g. colours: "1,2,3;4,5,6"
                value = [v for v in text.split(';') if v.strip()]
            else:
                value = [v for v in text.split(',') if v.strip()]
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


def resolve_config(config_path=None, overrides=None):
    """Defaults <- YAML at `config_path` <- `overrides` (flag strings). Returns a valid Config."""
    values = {}
    if config_path:
        _apply(values, load_yaml(config_path), False, config_path)
    _apply(values, overrides or {}, True, 'the command-line flags')
    return Config(**values).validate()


def save_config(config, directory):
    """Writes the resolved config as `directory/config.yaml`; returns its path."""
    path = os.path.join(directory, CONFIG_FILENAME)
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def add_config_flags(parser):
    """Adds `--KEY` for every config key to an argparse parser (values are parsed by type)."""
    for name in _FIELDS:
        parser.add_argument('--' + name, default=None, metavar=name.upper(),
                            help='overrides config key %s' % name)


def overrides_from_args(args):
    """The config keys given on the command line, as {key: string}."""
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name) is not None}
