"""Networks with slim's variable names, behind one factory.

Every network has the slim signature `fn(images, num_classes, is_training, ...) ->
(logits, end_points)`; images are float [batch, h, w, 3] RGB minus nets.vgg.MEAN_RGB and the
logits come out at the input's height and width.

    logits, end_points = build_network(images, 21, is_training=True, model='fcn8s')
"""
import functools

import tf_slim as slim

from nets.fcn import fcn, upsample
from nets.inception_v3_fcn import inception_v3_fcn
from nets.mobilenet_v1 import mobilenet_v1_fcn, mobilenet_v1_fcn8s
from nets.vgg import vgg_arg_scope


def _vgg_fcn(images, num_classes, is_training, weight_decay=5e-4, **kwargs):
    # slim's VGG defaults, and the same weight decay on the head's transposed convolutions.
    with slim.arg_scope(vgg_arg_scope(weight_decay)):
        with slim.arg_scope([upsample], weights_regularizer=slim.l2_regularizer(weight_decay)):
            return fcn(images, num_classes, is_training, **kwargs)


NETWORKS = {
    'fcn32s': functools.partial(_vgg_fcn, model='fcn32s'),
    'fcn16s': functools.partial(_vgg_fcn, model='fcn16s'),
    'fcn8s': functools.partial(_vgg_fcn, model='fcn8s'),
    'mobilenet_v1_fcn': mobilenet_v1_fcn,
    'mobilenet_v1_fcn8s': mobilenet_v1_fcn8s,
    'inception_v3_fcn32s': functools.partial(inception_v3_fcn, skips='32s'),
    'inception_v3_fcn16s': functools.partial(inception_v3_fcn, skips='16s'),
    'inception_v3_fcn8s': functools.partial(inception_v3_fcn, skips='8s'),
}
MODELS = tuple(NETWORKS)
# The classifier scopes of the published classification checkpoints of each backbone.
CLASSIFIER_SCOPES = {'vgg_16': ('vgg_16/fc8',), 'MobilenetV1': ('MobilenetV1/Logits',),
                     'InceptionV3': ('InceptionV3/Logits', 'InceptionV3/AuxLogits')}


def build_network(images, num_classes, is_training, model='fcn8s', **kwargs):
    """Builds the named network. Keyword arguments irrelevant to it are ignored."""
    if model not in NETWORKS:
        raise ValueError('unknown model %r; choose one of %s' % (model, ', '.join(MODELS)))
    return NETWORKS[model](images, num_classes, is_training, **kwargs)
