"""Networks with slim's variable names, behind one factory.

Every network has the slim signature `fn(images, num_classes, is_training, ...) ->
(logits, end_points)` with exactly its own keyword arguments; images follow nets/inputs.py (float
RGB minus MEAN_RGB), the logits come out at the input's height and width, and
`end_points[LOGITS]` holds them for every network.

    logits, end_points = build_network(images, 21, is_training=True, model='fcn8s')
"""
import functools
import inspect

import tf_slim as slim

from nets.fcn import LOGITS, fcn, upsample  # noqa: F401 (LOGITS: the shared end-point key)
from nets.inception_v3_fcn import inception_v3_fcn
from nets.layers import forward_kernel_gradients
from nets.mobilenet_v1 import mobilenet_v1_fcn
from nets.vgg import FC_DEPTH, vgg_arg_scope


def vgg_fcn(images, num_classes, is_training=True, model='fcn8s', dropout_keep_prob=0.5,
            fc_depth=FC_DEPTH, at_once=False, learn_upsampling=True, weight_decay=5e-4):
    """nets.fcn.fcn under slim's VGG defaults, with the same weight decay on the head's
    transposed convolutions."""
    with slim.arg_scope(vgg_arg_scope(weight_decay)):
        with slim.arg_scope([upsample], weights_regularizer=slim.l2_regularizer(weight_decay)):
            return fcn(images, num_classes, is_training, model, dropout_keep_prob, fc_depth,
                       at_once, learn_upsampling)


NETWORKS = {
    'fcn32s': functools.partial(vgg_fcn, model='fcn32s'),
    'fcn16s': functools.partial(vgg_fcn, model='fcn16s'),
    'fcn8s': functools.partial(vgg_fcn, model='fcn8s'),
    'mobilenet_v1_fcn': mobilenet_v1_fcn,
    'mobilenet_v1_fcn8s': functools.partial(mobilenet_v1_fcn, skips=True),
    'inception_v3_fcn32s': functools.partial(inception_v3_fcn, skips='32s'),
    'inception_v3_fcn16s': functools.partial(inception_v3_fcn, skips='16s'),
    'inception_v3_fcn8s': functools.partial(inception_v3_fcn, skips='8s'),
}
MODELS = tuple(NETWORKS)
# The settings that define a network beside `model` and `num_classes` (config keys of the same
# names). Each network takes the ones it uses; SHAPE_ARGS change its variables' shapes, so a
# checkpoint of one value does not load into another.
NETWORK_ARGS = ('fc_depth', 'at_once', 'learn_upsampling', 'weight_decay', 'depth_multiplier',
                'final_endpoint', 'classifier_kernel', 'classifier_depth')
SHAPE_ARGS = ('fc_depth', 'depth_multiplier', 'final_endpoint', 'classifier_kernel',
              'classifier_depth')
TRAINING_ARGS = ('dropout_keep_prob', 'batch_norm_decay')  # matter in training only
# The classifier scopes of the published classification checkpoints of each backbone.
CLASSIFIER_SCOPES = {'vgg_16': ('vgg_16/fc8',), 'MobilenetV1': ('MobilenetV1/Logits',),
                     'InceptionV3': ('InceptionV3/Logits', 'InceptionV3/AuxLogits')}


def accepted_args(model):
    """The keyword arguments of NETWORK_ARGS + TRAINING_ARGS that network `model` takes."""
    parameters = inspect.signature(NETWORKS[model]).parameters
    return tuple(name for name in NETWORK_ARGS + TRAINING_ARGS if name in parameters)


def build_network(images, num_classes, is_training, model='fcn8s', **kwargs):
    """Builds the named network, handing it those of `kwargs` it takes.

    `kwargs` are settings of NETWORK_ARGS or TRAINING_ARGS (e.g. all of a config's); another
    name is an error, so a misspelt setting never passes silently.
    """
    if model not in NETWORKS:
        raise ValueError('unknown model %r; choose one of %s' % (model, ', '.join(MODELS)))
    unknown = sorted(set(kwargs) - set(NETWORK_ARGS + TRAINING_ARGS))
    if unknown:
        raise TypeError('build_network got unknown settings %s; known: %s'
                        % (', '.join(unknown), ', '.join(NETWORK_ARGS + TRAINING_ARGS)))
    own = {name: kwargs[name] for name in accepted_args(model) if name in kwargs}
    with forward_kernel_gradients():
        return NETWORKS[model](images, num_classes, is_training, **own)
