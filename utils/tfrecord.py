"""TFRecord schema for image/label pairs, and its reader.

Keys follow the classic FCN homework converter. This suite stores the label PNG-encoded and marks
it with `image/label/format`; records of the homework converter hold the label as raw uint8 bytes
(height x width) with no format key, and the reader accepts both.
"""
import glob
import itertools
import os
import threading

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

KEY_HEIGHT = 'image/height'
KEY_WIDTH = 'image/width'
KEY_FILENAME = 'image/filename'
KEY_ENCODED = 'image/encoded'
KEY_FORMAT = 'image/format'
KEY_LABEL = 'image/label'
KEY_LABEL_FORMAT = 'image/label/format'
LABEL_FORMAT_PNG = b'png'
IGNORE_LABEL = 255  # label value of void pixels (utils.config re-exports it)


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


class DecodeFailures:
    """Counts records whose image or label cannot be decoded (thread-safe), with their names."""

    def __init__(self):
        self._lock = threading.Lock()
        self.names = []

    def add(self, name):
        with self._lock:
            self.names.append(name)

    @property
    def count(self):
        return len(self.names)


def decode_pair(encoded_image, encoded_label, label_format, height, width):
    """(RGB uint8 [h, w, 3], label uint8 [h, w]) of one record's bytes, or None when the bytes
    do not decode or disagree with the stored size."""
    image = cv2.imdecode(np.frombuffer(encoded_image, np.uint8), cv2.IMREAD_COLOR)
    if label_format == LABEL_FORMAT_PNG:
        label = cv2.imdecode(np.frombuffer(encoded_label, np.uint8), cv2.IMREAD_UNCHANGED)
    elif len(encoded_label) == height * width:  # homework records: raw uint8 bytes
        label = np.frombuffer(encoded_label, np.uint8).reshape(height, width)
    else:
        label = None
    if (image is None or label is None or label.ndim != 2
            or image.shape[:2] != (height, width) or label.shape != (height, width)):
        return None
    return image[..., ::-1], label


def parse_example(serialized, failures=None):
    """Decodes one serialized Example.

    Returns a dict: 'image' uint8 [h, w, 3] RGB, 'label' uint8 [h, w] class indices,
    'filename' string scalar, 'ok' bool scalar (False: the record did not decode; image and
    label are then empty and the record's filename is added to `failures`).
    """
    features = tf.parse_single_example(serialized, _FEATURES)

    def _decode(encoded_image, encoded_label, label_format, height, width, filename):
        pair = decode_pair(encoded_image, encoded_label, label_format, int(height), int(width))
        if pair is None:
            if failures is not None:
                failures.add(filename.decode('utf-8', 'replace'))
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), False
        return np.ascontiguousarray(pair[0]), np.ascontiguousarray(pair[1]), True

    image, label, ok = tf.numpy_function(
        _decode, [features[KEY_ENCODED], features[KEY_LABEL], features[KEY_LABEL_FORMAT],
                  features[KEY_HEIGHT], features[KEY_WIDTH], features[KEY_FILENAME]],
        [tf.uint8, tf.uint8, tf.bool], stateful=False)
    image.set_shape([None, None, 3])
    label.set_shape([None, None])
    ok.set_shape([])
    return {'image': image, 'label': label, 'filename': features[KEY_FILENAME], 'ok': ok}


def check_records(paths, num_classes, samples=3):
    """Reads the first records of the first file: raises ValueError naming the file when the
    schema is not this suite's (or the homework's), or labels exceed num_classes."""
    path = paths[0]
    try:
        records = list(itertools.islice(tf.io.tf_record_iterator(path), samples))
    except tf.errors.OpError as e:
        raise ValueError('TFRecord file %s cannot be read: %s' % (path, e.message)) from None
    if not records:
        raise ValueError('TFRecord file %s holds no record; convert the dataset again' % path)
    for record in records:
        try:
            feature = tf.train.Example.FromString(record).features.feature
        except Exception:  # a protobuf DecodeError: not tf.train.Example records
            raise ValueError('%s does not hold tf.train.Example records; convert the dataset '
                             'with convert_fcn_dataset.py' % path) from None
        missing = [k for k in (KEY_HEIGHT, KEY_WIDTH, KEY_ENCODED, KEY_LABEL) if k not in feature]
        if missing:
            raise ValueError('records of %s lack %s: not a segmentation dataset of this suite; '
                             'convert it with convert_fcn_dataset.py' % (path, ', '.join(missing)))
        height = feature[KEY_HEIGHT].int64_list.value[0]
        width = feature[KEY_WIDTH].int64_list.value[0]
        label_format = (feature[KEY_LABEL_FORMAT].bytes_list.value[0]
                        if KEY_LABEL_FORMAT in feature else b'')
        pair = decode_pair(feature[KEY_ENCODED].bytes_list.value[0],
                           feature[KEY_LABEL].bytes_list.value[0], label_format, height, width)
        if pair is None:
            continue  # one bad record is skipped at training time
        values = np.unique(pair[1])
        bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
        if bad.size:
            raise ValueError('labels in %s have values %s but num_classes is %d; check the config '
                             'or convert the dataset with the right one'
                             % (path, bad[:10].tolist(), num_classes))


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
