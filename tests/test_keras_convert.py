"""Keras VGG16 .h5 -> slim vgg_16 checkpoint, checked by comparing activations."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets.inputs import MEAN_RGB
from nets.vgg import vgg_16
from tests.conftest import ROOT

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@pytest.mark.slow
@pytest.mark.parametrize('filename', ['vgg16.weights.h5', 'vgg16_legacy.h5'])
def test_converted_checkpoint_reproduces_keras_activations(tmp_path, filename):
    image = np.random.RandomState(0).randint(0, 256, (1, 224, 224, 3)).astype(np.float32)
    h5 = str(tmp_path / filename)
    script = '''
import numpy as np, keras, sys
keras.utils.set_random_seed(0)
model = keras.applications.VGG16(weights=None)
if sys.argv[1].endswith('.weights.h5'):
    model.save_weights(sys.argv[1])  # Keras 3 layout
else:
    keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group  # Keras 2 layout
    import h5py
    with h5py.File(sys.argv[1], 'w') as f:
        keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group(f, model)
image = np.load(sys.argv[2])
bgr = image[..., ::-1] - np.array(%r, np.float32)
fc2 = keras.Model(model.input, model.get_layer('fc2').output)(bgr)
np.save(sys.argv[3], np.asarray(fc2))
''' % (CAFFE_MEAN_BGR,)
    np.save(str(tmp_path / 'image.npy'), image)
    subprocess.run([sys.executable, '-c', script, h5, str(tmp_path / 'image.npy'),
                    str(tmp_path / 'fc2.npy')], check=True, capture_output=True, timeout=600)
    ckpt = str(tmp_path / 'vgg_16.ckpt')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'convert_keras_vgg16.py'),
                             '--h5', h5, '--output_path', ckpt], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'Wrote 32 variables' in result.stdout
    inputs = tf.constant(image - np.array(MEAN_RGB, np.float32))
    _, end_points = vgg_16(inputs, 1000, is_training=False)
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, ckpt)
        fc7 = sess.run(end_points['vgg_16/fc7'])[0, 3, 3]  # the 7x7 map's centre = dense layer
    expected = np.load(str(tmp_path / 'fc2.npy'))[0]
    np.testing.assert_allclose(fc7, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert np.abs(expected).max() > 0
