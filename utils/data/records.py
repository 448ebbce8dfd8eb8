"""TFRecord schema for image/label pairs, and its reader.

Keys follow the classic FCN homework converter. This suite stores the label PNG-encoded and marks
it with `image/label/format`; records of the homework converter hold the label as raw uint8 bytes
(height x width) with no format key, and the reader accepts both.
"""
import collections
import glob
import itertools
import os
import re
import threading

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from utils.cli import split_list
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG
from utils.errors import DataError, error_reason

KEY_HEIGHT = 'image/height'
KEY_WIDTH = 'image/width'
KEY_FILENAME = 'image/filename'
KEY_ENCODED = 'image/encoded'
KEY_FORMAT = 'image/format'
KEY_LABEL = 'image/label'
KEY_LABEL_FORMAT = 'image/label/format'
LABEL_FORMAT_PNG = b'png'
IGNORE_LABEL = 255  # void pixels in every record, training label and score

# The converter's output contract: one file PATH, or shards PATH-00000-of-0000N, ..., and the
# report PATH.report.json beside them (for shards too: the PATH they share).
SHARD_FORMAT = '%s-%05d-of-%05d'
SHARD_GLOB = '-?????-of-?????'
SHARD_SUFFIX = re.compile(r'-\d{5}-of-\d{5}$')
REPORT_SUFFIX = '.report.json'


def shard_paths(output_path, num_shards):
    """`output_path` itself for one shard, else PATH-00000-of-0000N, ..."""
    if num_shards == 1:
        return [output_path]
    return [SHARD_FORMAT % (output_path, i, num_shards) for i in range(num_shards)]


def report_path(record_path):
    """The converter's report of a record file or of one of its shards."""
    return SHARD_SUFFIX.sub('', record_path) + REPORT_SUFFIX


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
    """Counts records whose image or label cannot be decoded (thread-safe), with their names
    and why."""

    def __init__(self):
        self._lock = threading.Lock()
        self.names = []
        self.reasons = []

    def add(self, name, reason=''):
        with self._lock:
            self.names.append(name)
            self.reasons.append(reason)

    def summary(self):
        """['NAME: REASON', ...] of the records skipped so far, each once."""
        return list(dict.fromkeys('%s: %s' % item for item in zip(self.names, self.reasons)))

    @property
    def count(self):
        return len(self.names)


class UndecodableRecord(ValueError):
    """A record whose image or label does not decode, or disagrees with its stored size."""


def example_fields(serialized, path='records'):
    """One serialized Example as Python values: {'height', 'width', 'filename' (str),
    'image' (encoded bytes), 'label' (bytes), 'label_format' (b'png', or b'' for raw bytes)}.

    Raises DataError naming `path` when the bytes are not an Example of this schema.
    """
    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except Exception:  # a protobuf DecodeError: not tf.train.Example records
        raise DataError('%s does not hold tf.train.Example records; convert the dataset with '
                        'convert_fcn_dataset.py' % path) from None
    missing = [k for k in (KEY_HEIGHT, KEY_WIDTH, KEY_ENCODED, KEY_LABEL) if k not in feature]
    if missing:
        raise DataError('records of %s lack %s: not a segmentation dataset of this suite; '
                        'convert it with convert_fcn_dataset.py' % (path, ', '.join(missing)))

    def first(key, kind, default):
        values = getattr(feature[key], kind).value if key in feature else []
        return values[0] if values else default

    return {'height': int(first(KEY_HEIGHT, 'int64_list', 0)),
            'width': int(first(KEY_WIDTH, 'int64_list', 0)),
            'filename': first(KEY_FILENAME, 'bytes_list', b'').decode('utf-8', 'replace'),
            'image': first(KEY_ENCODED, 'bytes_list', b''),
            'label': first(KEY_LABEL, 'bytes_list', b''),
            'label_format': first(KEY_LABEL_FORMAT, 'bytes_list', b'')}


def decode_pair(encoded_image, encoded_label, label_format, height, width,
                max_pixels=MAX_IMAGE_PIXELS):
    """The one decoder of a record's pair, for training, evaluation and verification.

    Returns (RGB uint8 [h, w, 3], label uint8 [h, w]); raises UndecodableRecord with the reason
    when the bytes do not decode, disagree with the stored size, or the stored size exceeds
    `max_pixels` (utils.data.pixels; 0: no limit), which is checked before decoding.
    """
    if max_pixels and height * width > max_pixels:
        raise UndecodableRecord('%dx%d pixels, above the limit of %d (%s)'
                                % (width, height, max_pixels, PIXELS_FLAG))
    image = cv2.imdecode(np.frombuffer(encoded_image, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UndecodableRecord('image does not decode')
    if label_format == LABEL_FORMAT_PNG:
        label = cv2.imdecode(np.frombuffer(encoded_label, np.uint8), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise UndecodableRecord('label does not decode as a one-channel PNG')
    elif len(encoded_label) == height * width:  # homework records: raw uint8 bytes
        label = np.frombuffer(encoded_label, np.uint8).reshape(height, width)
    else:
        raise UndecodableRecord('raw label has %d bytes, expected height x width = %d'
                                % (len(encoded_label), height * width))
    if image.shape[:2] != (height, width) or label.shape != (height, width):
        raise UndecodableRecord('image %dx%d and label %dx%d disagree with the stored size %dx%d'
                                % (image.shape[0], image.shape[1], label.shape[0],
                                   label.shape[1], height, width))
    return image[..., ::-1], label


def decode_fields(fields):
    """decode_pair of example_fields' dict."""
    return decode_pair(fields['image'], fields['label'], fields['label_format'],
                       fields['height'], fields['width'])


def labels_outside(label, num_classes):
    """Sorted label values that are neither a class in [0, num_classes) nor IGNORE_LABEL
    (one vectorised pass; values are sorted only when there are some)."""
    bad = (label >= num_classes) & (label != IGNORE_LABEL)
    return np.unique(label[bad]).tolist() if bad.any() else []


def parse_example(serialized, failures=None, num_classes=None, path='',
                  max_pixels=MAX_IMAGE_PIXELS):
    """Decodes one serialized Example in the graph.

    Returns a dict: 'image' uint8 [h, w, 3] RGB, 'label' uint8 [h, w] class indices,
    'filename' string scalar, 'ok' bool scalar (False: the record did not decode; image and
    label are then empty and the record's filename is added to `failures`). With
    `num_classes`, a label value that is neither a class nor IGNORE_LABEL stops the reading
    with LabelsOutOfRange naming the record file `path` (a string tensor) and the image.
    Images above `max_pixels` are skipped as undecodable (see decode_pair).
    """
    features = tf.parse_single_example(serialized, _FEATURES)

    def _decode(encoded_image, encoded_label, label_format, height, width, filename, path):
        name = filename.decode('utf-8', 'replace')
        try:
            image, label = decode_pair(encoded_image, encoded_label, label_format, int(height),
                                       int(width), max_pixels)
        except UndecodableRecord as e:
            if failures is not None:
                failures.add(name, str(e))
            return np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.uint8), False
        bad = labels_outside(label, num_classes) if num_classes is not None else []
        if bad:
            raise LabelsOutOfRange(out_of_range_message(path.decode('utf-8', 'replace'), name,
                                                        bad, num_classes))
        return np.ascontiguousarray(image), np.ascontiguousarray(label), True

    image, label, ok = tf.numpy_function(
        _decode, [features[KEY_ENCODED], features[KEY_LABEL], features[KEY_LABEL_FORMAT],
                  features[KEY_HEIGHT], features[KEY_WIDTH], features[KEY_FILENAME],
                  tf.convert_to_tensor(path, tf.string)],
        [tf.uint8, tf.uint8, tf.bool], stateful=False)
    image.set_shape([None, None, 3])
    label.set_shape([None, None])
    ok.set_shape([])
    return {'image': image, 'label': label, 'filename': features[KEY_FILENAME], 'ok': ok}


def read_pairs(record_spec, limit=0):
    """(RGB image uint8 [h, w, 3], label uint8 [h, w]) of every record that decodes, in file
    order, outside the graph (calibration, offline scoring); `limit` > 0 stops after that
    many."""
    count = 0
    for path in resolve_record_paths(record_spec):
        for record in tf.io.tf_record_iterator(path):
            try:
                yield decode_fields(example_fields(record, path))
            except UndecodableRecord:
                continue
            count += 1
            if limit and count >= limit:
                return


def check_records(paths, num_classes, samples=3):
    """Reads the first records of the first file: raises DataError naming the file when the
    schema is not this suite's (or the homework's), or labels exceed num_classes."""
    path, records = paths[0], []
    try:
        for record in itertools.islice(tf.io.tf_record_iterator(path), samples):
            records.append(record)
    except tf.errors.OpError as e:
        if not records:  # a damaged tail is skipped at reading time (see scan_records)
            raise DataError('TFRecord file %s cannot be read (%s): not records, or damaged '
                            'from the start; convert the dataset again' % (path, error_reason(e))
                            ) from None
    if not records:
        raise DataError('TFRecord file %s holds no record; convert the dataset again' % path)
    for index, record in enumerate(records):
        fields = example_fields(record, '%s (record %d)' % (path, index))
        try:
            _, label = decode_fields(fields)
        except UndecodableRecord:
            continue  # one bad record is skipped at training time
        bad = labels_outside(label, num_classes)
        if bad:
            raise DataError(out_of_range_message(path, fields['filename'], bad, num_classes))


def verify_records(paths, num_classes):
    """Reads records back: each must decode, sizes must agree, labels must be classes or void.

    Returns {'records': count, 'errors': [messages], 'class_pixel_counts': [...]}.
    """
    count, errors = 0, []
    class_pixels = np.zeros(num_classes, np.int64)
    for path in paths:
        try:
            for index, record in enumerate(tf.io.tf_record_iterator(path)):
                count += 1
                fields = example_fields(record, path)
                name = '%s record %d (%s)' % (path, index, fields['filename'])
                try:
                    _, label = decode_fields(fields)
                except UndecodableRecord as e:
                    errors.append('%s: %s' % (name, e))
                    continue
                bad = labels_outside(label, num_classes)
                if bad:
                    errors.append('%s: label values %s out of range' % (name, bad[:10]))
                class_pixels += np.bincount(label.ravel(), minlength=256)[:num_classes]
        except tf.errors.DataLossError as e:
            errors.append('%s is truncated or corrupt: %s' % (path, e.message))
    return {'records': count, 'errors': errors, 'class_pixel_counts': class_pixels.tolist()}


def resolve_record_paths(spec, log=None):
    """The TFRecord files of `spec`: a file, a comma-separated list of files, or glob patterns.

    A path that exists is taken as written before anything else (so `cam[1].record` is that
    file, not `cam1.record`, and a name holding a comma is one file); a pattern that expands
    names its files through `log`. A path written as a single file by a sharded conversion
    (`PATH-00000-of-0000N`) is found too. Errors name what is missing.
    """
    if not spec:
        raise FileNotFoundError('no TFRecord path given')
    paths = []
    for part in [spec] if os.path.exists(spec) else split_list(spec):
        matches = [part] if os.path.exists(part) else (
            sorted(glob.glob(part)) or sorted(glob.glob(glob.escape(part) + SHARD_GLOB))
            or sorted(glob.glob(part + SHARD_GLOB)))  # a pattern of sharded conversions
        if not matches:
            listed = (' (read as the list %s: files are separated by commas)'
                      % split_list(spec) if ',' in spec else '')
            raise FileNotFoundError('TFRecord file %s does not exist%s; run convert_fcn_dataset.py '
                                    'first or fix the path' % (part, listed))
        if log and matches != [part]:
            log('%s matched %d file(s): %s' % (part, len(matches), ', '.join(matches)))
        paths.extend(matches)
    empty = [path for path in paths if not os.path.getsize(path)]
    if empty:
        raise DataError('TFRecord file %s is empty; convert the dataset again or leave it out'
                        % empty[0])
    return paths


# One record file read through: its readable records, and what stopped the reading early.
RecordFile = collections.namedtuple('RecordFile', 'path count damage')


def scan_records(paths, check_schema=False):
    """Reads every record of `paths` (checking each record's CRC): [RecordFile]. `damage` is
    None for an intact file, else why reading stopped after `count` records (truncated or
    corrupt); the pipelines read those records and skip the rest. `check_schema`: every
    record must be an Example of this schema (DataError naming the file and record)."""
    files = []
    for path in paths:
        count, damage = 0, None
        try:
            for record in tf.io.tf_record_iterator(path):
                if check_schema:
                    example_fields(record, '%s (record %d)' % (path, count))
                count += 1
        except tf.errors.OpError as e:
            damage = error_reason(e)
        files.append(RecordFile(path, count, damage))
    return files


def count_records(paths):
    """Number of readable records in the given TFRecord files (reads them through)."""
    return sum(f.count for f in scan_records(paths))


class LabelsOutOfRange(ValueError):
    """Raised inside the graph's reader; data_error_from turns it back into a DataError."""


def out_of_range_message(path, name, values, num_classes):
    return ('labels of %s in %s have values %s, but num_classes is %d: set num_classes (and '
            'class_names) in the config to those of the dataset, or convert the dataset again '
            'with the right void_label / label_map' % (name, path, values[:10], num_classes))


def data_error_from(op_error):
    """The DataError that the graph's reader raised (LabelsOutOfRange) inside a session run's
    tf.errors.OpError, or None when the error is something else."""
    match = re.search(r'LabelsOutOfRange: (.*)', op_error.message)
    return DataError(match.group(1).strip()) if match else None
