"""Keras VGG16 ImageNet weights (.h5) -> a tf-slim `vgg_16` checkpoint.

Keras' VGG16 (`keras.applications.VGG16`) takes BGR images minus the Caffe mean and names its
layers block1_conv1 ... block5_conv3, fc1, fc2, predictions; slim's vgg_16 takes RGB minus
MEAN_RGB and names them vgg_16/conv1/conv1_1 ... fc6, fc7, fc8. The conversion renames, flips
conv1_1's input channels (BGR -> RGB) and reshapes the dense layers into convolutions
(fc1 [25088, 4096] -> fc6 [7, 7, 512, 4096]). Both Keras 2 (`model_weights/...kernel:0`) and
Keras 3 (`layers/.../vars/0`) h5 layouts are read.
"""
import h5py
import numpy as np
import tensorflow.compat.v1 as tf

from utils.errors import DataError

KERAS_TO_SLIM = {'block%d_conv%d' % (b, i): 'vgg_16/conv%d/conv%d_%d' % (b, b, i)
                 for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)}
KERAS_TO_SLIM.update({'fc1': 'vgg_16/fc6', 'fc2': 'vgg_16/fc7', 'predictions': 'vgg_16/fc8'})
DENSE_SHAPES = {'fc1': (7, 7, 512), 'fc2': (1, 1), 'predictions': (1, 1)}


KERAS_ORDER = sorted(KERAS_TO_SLIM, key=lambda n: (n.startswith(('fc', 'pred')), n))


def _generic_index(name, prefix):
    """Keras 3 .weights.h5 names layers by class: conv2d, conv2d_1, ... -> 0, 1, ..."""
    if name == prefix:
        return 0
    if name.startswith(prefix + '_') and name[len(prefix) + 1:].isdigit():
        return int(name[len(prefix) + 1:])
    return None


def read_keras_vgg16(h5_path):
    """{keras layer: {'kernel': array, 'bias': array}} from a Keras VGG16 .h5 file.

    Keras 2 files name the layers (block1_conv1, ...); Keras 3 `.weights.h5` files name them
    by class in creation order (layers/conv2d, layers/conv2d_1, ..., layers/dense_2).
    """
    layers, generic = {}, {}

    def visit(name, item):
        if not isinstance(item, h5py.Dataset):
            return
        parts = name.split('/')
        kind = 'kernel' if item.ndim > 1 else 'bias'
        layer = next((p for p in parts if p in KERAS_TO_SLIM), None)
        if layer is not None:
            layers.setdefault(layer, {})[kind] = np.array(item)
            return
        for part in parts:
            for prefix in ('conv2d', 'dense'):
                index = _generic_index(part, prefix)
                if index is not None:
                    generic.setdefault((prefix, index), {})[kind] = np.array(item)

    with h5py.File(h5_path, 'r') as f:
        f.visititems(visit)
    if not layers and generic:
        convs = [generic[k] for k in sorted(k for k in generic if k[0] == 'conv2d')]
        denses = [generic[k] for k in sorted(k for k in generic if k[0] == 'dense')]
        layers = dict(zip([n for n in KERAS_ORDER if n.startswith('block')], convs))
        layers.update(zip(['fc1', 'fc2', 'predictions'], denses))
    missing = [k for k in KERAS_TO_SLIM if k not in layers and k != 'predictions']
    if missing:
        raise DataError('%s is not a Keras VGG16 weights file: no weights for %s'
                        % (h5_path, ', '.join(missing)))
    return layers


def keras_to_slim(layers):
    """{slim variable name: array} for vgg_16 (fc8 only when the file has `predictions`)."""
    variables = {}
    for keras_name, weights in layers.items():
        slim_name = KERAS_TO_SLIM[keras_name]
        kernel = weights['kernel']
        if keras_name in DENSE_SHAPES:  # dense [in, out] -> conv [kh, kw, c, out]
            shape = DENSE_SHAPES[keras_name]
            kernel = kernel.reshape(shape + ((kernel.shape[0],) if len(shape) == 2 else ())
                                    + (kernel.shape[1],))
        if keras_name == 'block1_conv1':
            kernel = kernel[:, :, ::-1, :]  # BGR input channels -> RGB
        variables[slim_name + '/weights'] = np.ascontiguousarray(kernel, np.float32)
        variables[slim_name + '/biases'] = weights['bias'].astype(np.float32)
    return variables


def write_checkpoint(variables, checkpoint_path):
    """Saves {name: array} as a TF1 checkpoint with exactly those variable names.

    The arrays are fed, not baked into the graph as constants: VGG16's 528 MB as constants
    took 30 s to serialise, fed they take well under a second."""
    with tf.Graph().as_default():
        feeds, holders = {}, {}
        for name, value in variables.items():
            placeholder = tf.placeholder(value.dtype, value.shape)
            holders[name] = tf.Variable(placeholder, name=name)
            feeds[placeholder] = value
        with tf.Session() as session:
            session.run(tf.global_variables_initializer(), feeds)
            return tf.train.Saver(holders).save(session, checkpoint_path,
                                                write_meta_graph=False)
