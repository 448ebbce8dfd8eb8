"""tf.data input pipelines from TFRecords: training batches and full-size validation images.

Records are streamed (never loaded whole), decoded in parallel and prefetched.
"""
import json
import os

import tensorflow.compat.v1 as tf

from utils.data.pixels import MAX_IMAGE_PIXELS
from utils.data.preprocessing import preprocess_for_train
from utils.data.records import (check_records, parse_example, report_path,
                                resolve_record_paths, scan_records)
from utils.errors import ConfigError, DataError

AUTOTUNE = tf.data.experimental.AUTOTUNE


# Records whose every label pixel is void: training would learn nothing at loss 0, and scores
# would be NaN.
NO_LABELLED_PIXEL = ('%s has no labelled pixel: every label is void, so there is nothing to '
                     'learn or score; the likely cause is the conversion (a wrong '
                     'label_map_default, void_label or label_map): convert again with the '
                     "dataset's config")


def check_dataset(record_spec, num_classes, log=print):
    """Fails early, naming the file, on records that are missing, empty, of another schema or
    of another number of classes (from the converter's report, and the first records), and
    reads every file through, checking each record's CRC and schema: a damaged file
    (truncated, corrupt) is logged, and the pipelines read its records up to the damage and
    skip the rest; a file with no readable record is an error. Training and evaluation both
    start here. Returns scan_records' list."""
    paths = resolve_record_paths(record_spec, log)
    labelled = []  # labelled pixels per file, from the converter's reports
    for path in paths:
        report = report_path(path)
        if os.path.isfile(report):
            with open(report) as f:
                written = json.load(f)
            written_for = written.get('num_classes')
            if written_for is not None and written_for != num_classes:
                raise ConfigError('%s was converted for %d classes but num_classes is %d; use '
                                  'the matching config' % (path, written_for, num_classes))
            if written.get('pairs_written') and 'class_pixel_counts' in written:
                labelled.append(sum(written['class_pixel_counts']))
    if len(labelled) == len(paths) and not sum(labelled):
        raise DataError(NO_LABELLED_PIXEL % ', '.join(paths))
    check_records(paths, num_classes)
    files = scan_records(paths, check_schema=True)
    for damaged in [f for f in files if f.damage]:
        if not damaged.count:
            raise DataError('%s holds no readable record (%s); convert it again or leave it out '
                            'of the list' % (damaged.path, damaged.damage))
        log('%s is damaged after record %d (%s): its first %d records are used, the rest is '
            'skipped; convert it again to use all' % (damaged.path, damaged.count,
                                                      damaged.damage, damaged.count))
    return files


def damage_report(files):
    """[{'path', 'readable_records', 'damage'}] of the damaged files of check_dataset's list
    (for the reports of a run or an evaluation)."""
    return [{'path': f.path, 'readable_records': f.count, 'damage': f.damage}
            for f in files if f.damage]


def read_records(paths, training=False):
    """(serialized record, its file's path) of every readable record of `paths`; a file's
    damaged remainder (truncated or corrupt) ends that file instead of failing the reading.
    `training`: files shuffled, repeated without end and read 4 at a time; else one pass in
    order."""
    files = tf.data.Dataset.from_tensor_slices(paths)

    def read(path):
        return tf.data.TFRecordDataset(path).ignore_errors().map(lambda s: (s, path))

    if not training:
        return files.flat_map(read)
    files = files.shuffle(len(paths)).repeat()
    return files.interleave(read, cycle_length=min(len(paths), 4), num_parallel_calls=AUTOTUNE)


def train_dataset(record_spec, crop_size, batch_size, min_scale=1.0, max_scale=1.0,
                  flip=True, jitter=False, shuffle_buffer=256, deterministic=False,
                  failures=None, num_classes=None):
    """Endless shuffled batches: images float32 [batch, ch, cw, 3] (mean-subtracted),
    labels int32 [batch, ch, cw] (IGNORE_LABEL where void or padded).

    `deterministic` decodes on one thread so that the random augmentations come in a fixed
    order (with a graph-level seed, two runs then see the same batches). Records that do not
    decode are skipped and named in `failures` (a utils.data.records.DecodeFailures); with
    `num_classes`, a label beyond the classes stops the reading (records.data_error_from).
    """
    dataset = read_records(resolve_record_paths(record_spec), training=True)
    dataset = dataset.shuffle(shuffle_buffer)
    parallel = 1 if deterministic else AUTOTUNE
    dataset = dataset.map(lambda s, path: parse_example(s, failures, num_classes, path),
                          num_parallel_calls=parallel)
    dataset = dataset.filter(lambda example: example['ok'])
    dataset = dataset.map(lambda example: preprocess_for_train(
        example['image'], example['label'], crop_size, min_scale, max_scale, flip, jitter),
        num_parallel_calls=parallel)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE)


def eval_dataset(record_spec, num_images=0, failures=None, num_classes=None,
                 max_pixels=MAX_IMAGE_PIXELS):
    """One pass, one full-size image at a time (sizes may differ between images).

    Yields dicts: 'image' uint8 [1, h, w, 3], 'label' int32 [1, h, w], 'filename' string [1].
    `num_images` > 0 stops after that many records; records that do not decode (or exceed
    `max_pixels`) are skipped and named in `failures`, as is a file's damaged remainder;
    labels beyond `num_classes` stop the reading.
    """
    dataset = read_records(resolve_record_paths(record_spec))
    if num_images:
        dataset = dataset.take(num_images)
    dataset = dataset.map(lambda s, path: parse_example(s, failures, num_classes, path,
                                                        max_pixels),
                          num_parallel_calls=AUTOTUNE)
    dataset = dataset.filter(lambda example: example['ok'])
    dataset = dataset.map(lambda example: {'image': example['image'],
                                           'label': tf.cast(example['label'], tf.int32),
                                           'filename': example['filename']})
    return dataset.batch(1).prefetch(2)
