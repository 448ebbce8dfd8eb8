"""TFRecord schema for image/label pairs, and its reader.

Keys follow the classic FCN homework converter. This suite stores the label PNG-encoded and marks
it with `image/label/format`; records of the homework converter hold the label as raw uint8 bytes
(height x width) with no format key, and the reader accepts both.
"""
import os
import glob

import tensorflow.compat.v1 as tf

KEY_HEIGHT = 'image/height'
KEY_WIDTH = 'image/width'
KEY_FILENAME = 'image/filename'
KEY_ENCODED = 'image/encoded'
KEY_FORMAT = 'image/format'
KEY_LABEL = 'image/label'
KEY_LABEL_FORMAT = 'image/label/format'
LABEL_FORMAT_PNG = b'png'


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(encoded_image, image_format, label_png, height, width, filename):
    """A tf.train.Example for one pair; `label_png` is the PNG-encoded class-index label."""
    return tf.train.Example(features=tf.train.Features(feature={
        KEY_HEIGHT: _int64(height),
        KEY_WIDTH: _int64(width),
        KEY_FILENAME: _bytes(filename.encode('utf-8')),
        KEY_ENCODED: _bytes(encoded_image),
        KEY_FORMAT: _bytes(image_format.encode('utf-8')),
        KEY_LABEL: _bytes(label_png),
        KEY_LABEL_FORMAT: _bytes(LABEL_FORMAT_PNG),
    }))


_FEATURES = {
    KEY_HEIGHT: tf.FixedLenFeature([], tf.int64),
    KEY_WIDTH: tf.FixedLenFeature([], tf.int64),
    KEY_FILENAME: tf.FixedLenFeature([], tf.string, default_value=''),
    KEY_ENCODED: tf.FixedLenFeature([], tf.string),
    KEY_FORMAT: tf.FixedLenFeature([], tf.string, default_value='png'),
    KEY_LABEL: tf.FixedLenFeature([], tf.string),
    KEY_LABEL_FORMAT: tf.FixedLenFeature([], tf.string, default_value=''),
}


def parse_example(serialized):
    """Decodes one serialized Example.

    Returns a dict: 'image' uint8 [h, w, 3] RGB, 'label' uint8 [h, w] class indices,
    'filename' string scalar.
    """
    features = tf.parse_single_example(serialized, _FEATURES)
    height = tf.cast(features[KEY_HEIGHT], tf.int32)
    width = tf.cast(features[KEY_WIDTH], tf.int32)
    image = tf.io.decode_image(features[KEY_ENCODED], channels=3, expand_animations=False)
    image = tf.reshape(image, [height, width, 3])
    encoded_label = features[KEY_LABEL]
    label = tf.cond(
        tf.equal(features[KEY_LABEL_FORMAT], LABEL_FORMAT_PNG),
        lambda: tf.io.decode_png(encoded_label, channels=1),
        # Homework records: raw uint8 bytes, height x width.
        lambda: tf.reshape(tf.io.decode_raw(encoded_label, tf.uint8), [height, width, 1]))
    label = tf.reshape(label, [height, width])
    return {'image': image, 'label': label, 'filename': features[KEY_FILENAME]}


def resolve_record_paths(spec):
    """Expands a comma-separated list of files or glob patterns; errors name what is missing.

    A path written as a single file by a sharded conversion (`PATH-00000-of-0000N`) is found too.
    """
    if not spec:
        raise FileNotFoundError('no TFRecord path given')
    paths = []
    for part in [p.strip() for p in spec.split(',') if p.strip()]:
        matches = sorted(glob.glob(part))
        if not matches and not os.path.exists(part):
            matches = sorted(glob.glob(part + '-?????-of-?????'))
        if not matches:
            raise FileNotFoundError('TFRecord file %s does not exist; run convert_fcn_dataset.py '
                                    'first or fix the path' % part)
        paths.extend(matches)
    for path in paths:
        if os.path.getsize(path) == 0:
            raise ValueError('TFRecord file %s is empty; convert the dataset again' % path)
    return paths


def count_records(paths):
    """Number of records in the given TFRecord files (reads them through)."""
    return sum(sum(1 for _ in tf.io.tf_record_iterator(p)) for p in paths)
