"""Image/label pairs -> one TFRecord file, with validation and a report.

Usable pairs are written; a pair that cannot be used is skipped with its reason. The record file
and its report are written under temporary names and renamed when complete.
"""
import json
import os
import time

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from utils.config import IGNORE_LABEL
from utils.datasets import PairError, read_index_label, remap_and_check_label
from utils.fileio import atomic_path, atomic_write_text
from utils.tfrecord import make_example

REPORT_SUFFIX = '.report.json'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8\xff'


def encode_pair(image_path, label_path, num_classes, void_label):
    """Reads, checks and encodes one pair. Returns (serialized Example, label uint8 [h, w]).

    Raises PairError with the reason when the pair cannot be used.
    """
    if label_path is None:
        raise PairError('image %s has no label file' % image_path)
    for path in (image_path, label_path):
        if not os.path.isfile(path):
            raise PairError('file %s does not exist' % path)
    with open(image_path, 'rb') as f:
        encoded = f.read()
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PairError('cannot decode image %s (corrupt or not an image)' % image_path)
    if encoded.startswith(_PNG_MAGIC):
        image_format = 'png'
    elif encoded.startswith(_JPEG_MAGIC):
        image_format = 'jpeg'
    else:  # BMP, TIFF, ...: store as PNG, which the reader decodes.
        image_format, encoded = 'png', cv2.imencode('.png', image)[1].tobytes()
    height, width = image.shape[:2]
    label = read_index_label(label_path)
    if label.shape != (height, width):
        raise PairError('size mismatch: image %s is %dx%d but label %s is %dx%d (width x height)'
                        % (image_path, width, height, label_path, label.shape[1], label.shape[0]))
    label = remap_and_check_label(label, num_classes, void_label, IGNORE_LABEL, label_path)
    ok, label_png = cv2.imencode('.png', label)
    if not ok:
        raise PairError('cannot encode label %s as PNG' % label_path)
    example = make_example(encoded, image_format, label_png.tobytes(), height, width,
                           os.path.basename(image_path))
    return example.SerializeToString(), label


def convert_pairs(pairs, output_path, num_classes, void_label, strict=False, log=print):
    """Writes every usable pair of `pairs` to `output_path`; returns the report dict.

    With `strict`, any unusable pair fails the conversion and nothing is written.

    The report (also saved as OUTPUT_PATH.report.json) counts written and skipped pairs, lists
    each skipped pair with its reason, and holds per-class pixel counts.
    """
    start = time.time()
    skipped = []
    class_pixels = np.zeros(num_classes + 1, np.int64)  # last bin: ignored pixels
    written = 0
    sizes = []
    with atomic_path(output_path) as tmp_path:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for index, (image_path, label_path) in enumerate(pairs):
                try:
                    serialized, label = encode_pair(image_path, label_path, num_classes,
                                                    void_label)
                except PairError as e:
                    skipped.append({'image': image_path, 'label': label_path, 'reason': str(e)})
                    log('skipped: %s' % e)
                    continue
                writer.write(serialized)
                written += 1
                sizes.append(label.shape)
                counts = np.bincount(label.ravel(), minlength=256)
                class_pixels[:num_classes] += counts[:num_classes]
                class_pixels[num_classes] += counts[IGNORE_LABEL]
                if (index + 1) % 100 == 0:
                    log('%d/%d pairs read' % (index + 1, len(pairs)))
        if strict and skipped:
            raise RuntimeError('%d of %d pairs are unusable (--strict); nothing written to %s'
                               % (len(skipped), len(pairs), output_path))
        if written == 0:
            raise RuntimeError('no usable image/label pair among %d; nothing written to %s'
                               % (len(pairs), output_path))
    seconds = time.time() - start
    report = {
        'output_path': output_path,
        'pairs_found': len(pairs),
        'pairs_written': written,
        'pairs_skipped': len(skipped),
        'skipped': skipped,
        'num_classes': num_classes,
        'ignore_label': IGNORE_LABEL,
        'min_size': [int(min(s[0] for s in sizes)), int(min(s[1] for s in sizes))],
        'max_size': [int(max(s[0] for s in sizes)), int(max(s[1] for s in sizes))],
        'class_pixel_counts': class_pixels[:num_classes].tolist(),
        'ignored_pixel_count': int(class_pixels[num_classes]),
        'seconds': round(seconds, 2),
        'images_per_second': round(written / max(seconds, 1e-9), 2),
    }
    atomic_write_text(output_path + REPORT_SUFFIX, json.dumps(report, indent=2))
    return report
