"""tf.data input pipelines from TFRecords: training batches and full-size validation images.

Records are streamed (never loaded whole), decoded in parallel and prefetched.
"""
import json
import os
import re

import tensorflow.compat.v1 as tf

from utils.data.conversion import REPORT_SUFFIX
from utils.data.preprocessing import preprocess_for_train
from utils.data.records import check_records, parse_example, resolve_record_paths
from utils.errors import ConfigError

AUTOTUNE = tf.data.experimental.AUTOTUNE


def check_dataset(record_spec, num_classes):
    """Fails early, naming the file, on records that are missing, empty, of another schema or
    of another number of classes (from the converter's report, and the first records)."""
    paths = resolve_record_paths(record_spec)
    for path in paths:
        report = re.sub(r'-\d{5}-of-\d{5}$', '', path) + REPORT_SUFFIX
        if os.path.isfile(report):
            with open(report) as f:
                written_for = json.load(f).get('num_classes')
            if written_for is not None and written_for != num_classes:
                raise ConfigError('%s was converted for %d classes but num_classes is %d; use '
                                  'the matching config' % (path, written_for, num_classes))
    check_records(paths, num_classes)


def train_dataset(record_spec, crop_size, batch_size, min_scale=1.0, max_scale=1.0,
                  flip=True, jitter=False, shuffle_buffer=256, deterministic=False,
                  failures=None):
    """Endless shuffled batches: images float32 [batch, ch, cw, 3] (mean-subtracted),
    labels int32 [batch, ch, cw] (IGNORE_LABEL where void or padded).

    `deterministic` decodes on one thread so that the random augmentations come in a fixed
    order (with a graph-level seed, two runs then see the same batches). Records that do not
    decode are skipped and named in `failures` (a utils.data.records.DecodeFailures).
    """
    paths = resolve_record_paths(record_spec)
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    dataset = dataset.shuffle(len(paths)).repeat()
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 4),
                                 num_parallel_calls=AUTOTUNE)
    dataset = dataset.shuffle(shuffle_buffer)

    parallel = 1 if deterministic else AUTOTUNE
    dataset = dataset.map(lambda s: parse_example(s, failures), num_parallel_calls=parallel)
    dataset = dataset.filter(lambda example: example['ok'])
    dataset = dataset.map(lambda example: preprocess_for_train(
        example['image'], example['label'], crop_size, min_scale, max_scale, flip, jitter),
        num_parallel_calls=parallel)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE)


def eval_dataset(record_spec, num_images=0, failures=None):
    """One pass, one full-size image at a time (sizes may differ between images).

    Yields dicts: 'image' uint8 [1, h, w, 3], 'label' int32 [1, h, w], 'filename' string [1].
    `num_images` > 0 stops after that many records; records that do not decode are skipped.
    """
    paths = resolve_record_paths(record_spec)
    dataset = tf.data.TFRecordDataset(paths)
    if num_images:
        dataset = dataset.take(num_images)

    dataset = dataset.map(lambda s: parse_example(s, failures), num_parallel_calls=AUTOTUNE)
    dataset = dataset.filter(lambda example: example['ok'])
    dataset = dataset.map(lambda example: {'image': example['image'],
                                           'label': tf.cast(example['label'], tf.int32),
                                           'filename': example['filename']})
    return dataset.batch(1).prefetch(2)
