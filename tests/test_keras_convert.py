"""Keras VGG16 .h5 -> slim vgg_16 checkpoint, checked by comparing activations."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets.inputs import MEAN_RGB
from nets.vgg import vgg_16
from tests.conftest import run_script

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


KERAS_SCRIPT = '''
import h5py, keras, numpy as np, sys
keras.utils.set_random_seed(0)
model = keras.applications.VGG16(weights=None)
model.save_weights(sys.argv[1])  # Keras 3 layout
with h5py.File(sys.argv[2], 'w') as f:  # Keras 2 layout
    keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group(f, model)
image = np.load(sys.argv[3])
bgr = image[..., ::-1] - np.array(%r, np.float32)
fc2 = keras.Model(model.input, model.get_layer('fc2').output)(bgr)
np.save(sys.argv[4], np.asarray(fc2))
''' % (CAFFE_MEAN_BGR,)


@pytest.fixture(scope='module')
def keras_vgg16(tmp_path_factory):
    """One random Keras VGG16 saved in both .h5 layouts, an image and the model's fc2
    activations on it (Keras in its own process): (folder, image, fc2)."""
    folder = tmp_path_factory.mktemp('keras')
    image = np.random.RandomState(0).randint(0, 256, (1, 224, 224, 3)).astype(np.float32)
    np.save(str(folder / 'image.npy'), image)
    subprocess.run([sys.executable, '-c', KERAS_SCRIPT, str(folder / 'vgg16.weights.h5'),
                    str(folder / 'vgg16_legacy.h5'), str(folder / 'image.npy'),
                    str(folder / 'fc2.npy')], check=True, capture_output=True, timeout=600)
    yield folder, image, np.load(str(folder / 'fc2.npy'))[0]
    shutil.rmtree(str(folder), ignore_errors=True)  # two 528 MB weight files


@pytest.mark.slow
@pytest.mark.parametrize('filename', ['vgg16.weights.h5', 'vgg16_legacy.h5'])
def test_converted_checkpoint_reproduces_keras_activations(tmp_path, keras_vgg16, filename):
    folder, image, expected = keras_vgg16
    ckpt = str(tmp_path / 'vgg_16.ckpt')
    code, log = run_script('convert_keras_vgg16.py', '--h5', str(folder / filename),
                           '--output_path', ckpt)
    assert code == 0, log
    assert 'Wrote 32 variables' in log
    inputs = tf.constant(image - np.array(MEAN_RGB, np.float32))
    _, end_points = vgg_16(inputs, 1000, is_training=False)
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, ckpt)
        fc7 = sess.run(end_points['vgg_16/fc7'])[0, 3, 3]  # the 7x7 map's centre = dense layer
    np.testing.assert_allclose(fc7, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    assert np.abs(expected).max() > 0
