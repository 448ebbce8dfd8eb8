"""Networks: backbones and FCN heads, with slim's variable names, behind one factory."""
import tf_slim as slim

from nets.fcn import SKIPS, fcn
from nets.vgg import vgg_arg_scope

MODELS = tuple(SKIPS)


def build_network(images, num_classes, is_training, model='fcn8s', weight_decay=5e-4,
                  **kwargs):
    """Builds the named network under its arg_scope.

    images: float [batch, h, w, 3] mean-subtracted RGB -> (logits [batch, h, w, num_classes],
    end_points). Extra keyword arguments go to the network function.
    """
    if model not in MODELS:
        raise ValueError('unknown model %r; choose one of %s' % (model, ', '.join(MODELS)))
    with slim.arg_scope(vgg_arg_scope(weight_decay)):
        return fcn(images, num_classes, is_training, model=model, **kwargs)
