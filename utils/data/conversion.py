"""Image/label pairs -> TFRecord file(s), with validation, parallel workers and a report.

Usable pairs are written in input order; a pair that cannot be used is skipped with its reason
(among them images above the pixel limit, read from their headers before any decoding).
Record files and the report are written under temporary names and renamed only when the whole
conversion succeeded, so an interrupted run never leaves a valid-looking partial output; the
files of an earlier conversion to the same path are replaced only when the caller allows it.
"""
import collections
import concurrent.futures
import contextlib
import glob
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import time

import cv2
import numpy as np
import tensorflow.compat.v1 as tf
from PIL import Image

from utils.data.dataset_page import NUM_SAMPLES, dataset_page_path, write_dataset_page
from utils.data.layouts import (PairError, label_lookup_table, pairing_problem, read_label,
                                remap_and_check_label)
from utils.data.pixels import MAX_IMAGE_PIXELS, ImageTooLarge, check_pixels, header_size
from utils.data.records import (IGNORE_LABEL, SHARD_GLOB, SHARD_SUFFIX, make_example,
                                report_path, shard_paths)
from utils.errors import DataError, JobError, OutputError
from utils.fileio import atomic_path, atomic_write_text, remove_stale_temporaries
from utils.visualization import default_palette

CHUNK_PAIRS = 50  # pairs per part file written by one worker task
# What the records of a conversion hold, for its report and dataset page: the skipped entries,
# class pixel counts [n + 1] (last: ignored), labelled pixels of the images holding each class
# [n], images holding each class [n], pixels of each label value as read [256], the (height,
# width) and the (image, label) paths of each pair written, and the record paths.
Written = collections.namedtuple('Written', 'skipped class_pixels image_pixels class_images '
                                            'raw_values sizes pairs paths')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8\xff'

# What a conversion needs to know about the dataset's labels and the images it accepts
# (picklable, for the workers).
LabelSpec = collections.namedtuple('LabelSpec', 'num_classes table color_map min_size '
                                                'allow_lossy_labels max_image_pixels')
# cv2.imdecode applies a JPEG's EXIF orientation; the same transform for its label, by tag.
EXIF_ORIENTATION = 0x0112
ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.T, 6: lambda a: a.T[:, ::-1], 7: lambda a: a.T[::-1, ::-1],
          8: lambda a: a.T[::-1]}


def make_label_spec(num_classes, void_label=IGNORE_LABEL, label_map=None,
                    label_map_default=None, label_offset=0, color_map=(), min_size=None,
                    allow_lossy_labels=False, max_image_pixels=MAX_IMAGE_PIXELS):
    """LabelSpec from the dataset's conventions (see utils.data.layouts.label_lookup_table);
    images or labels of more than `max_image_pixels` pixels (0: no limit) are skipped."""
    table = label_lookup_table(void_label, IGNORE_LABEL, label_map, label_map_default,
                               label_offset)
    return LabelSpec(num_classes, table, tuple(tuple(c) for c in color_map), min_size,
                     allow_lossy_labels, max_image_pixels)


def check_size(source, name, max_image_pixels):
    """Raises PairError (the pair is skipped) when the header of `source` (bytes or a path)
    gives more than `max_image_pixels` pixels: decoding it could take more memory than the
    machine has (a 243 KB PNG can hold 15000x15000 pixels, 675 MB decoded)."""
    try:
        check_pixels(header_size(source), name, max_image_pixels)
    except ImageTooLarge as e:
        raise PairError(str(e)) from None


def read_image(image_path, max_image_pixels=MAX_IMAGE_PIXELS):
    """(encoded bytes as stored, format 'png' | 'jpeg', decoded BGR image, EXIF orientation)."""
    with open(image_path, 'rb') as f:
        encoded = f.read()
    if not encoded:
        raise PairError('image %s is empty (0 bytes)' % image_path)
    check_size(encoded, 'image %s' % image_path, max_image_pixels)
    try:
        image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise PairError('cannot decode image %s (corrupt or not an image)' % image_path)
    orientation = 1
    if encoded.startswith(_PNG_MAGIC):
        image_format = 'png'
    elif encoded.startswith(_JPEG_MAGIC):
        image_format = 'jpeg'
        with contextlib.suppress(Exception), Image.open(io.BytesIO(encoded)) as im:
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    else:  # BMP, TIFF, ...: store as PNG, which the reader decodes.
        image_format, encoded = 'png', cv2.imencode('.png', image)[1].tobytes()
    return encoded, image_format, image, orientation


def read_pair_label(label_path, spec, shape, orientation):
    """The label as class ids before remapping, oriented as the decoded image."""
    with open(label_path, 'rb') as f:
        head = f.read(3)
    if head == _JPEG_MAGIC and not spec.allow_lossy_labels:
        raise PairError('label %s is a JPEG: its lossy compression changes class ids along the '
                        'edges; store labels as PNG (or pass --allow_lossy_labels)' % label_path)
    check_size(label_path, 'label %s' % label_path, spec.max_image_pixels)
    label = read_label(label_path, spec.color_map)
    if orientation in ORIENT and label.shape != shape:  # drawn on the stored pixels
        label = np.ascontiguousarray(ORIENT[orientation](label))
    return label


def encode_pair(image_path, label_path, spec):
    """Reads, checks and encodes one pair. Returns (serialized Example, label uint8 [h, w],
    the pixel count of each of the 256 label values as read, before remapping).

    Raises PairError with the reason when the pair cannot be used.
    """
    problem = pairing_problem(image_path, label_path)
    if problem:
        raise PairError(problem)
    for path in (image_path, label_path):
        if not os.path.isfile(path):
            raise PairError('file %s does not exist' % path)
    encoded, image_format, image, orientation = read_image(image_path, spec.max_image_pixels)
    height, width = image.shape[:2]
    if spec.min_size and (height < spec.min_size[0] or width < spec.min_size[1]):
        raise PairError('image %s is %dx%d, smaller than the minimum size %dx%d (height x width)'
                        % (image_path, height, width, spec.min_size[0], spec.min_size[1]))
    label = read_pair_label(label_path, spec, (height, width), orientation)
    raw_values = np.bincount(label.ravel(), minlength=256)
    if label.shape != (height, width):
        raise PairError('size mismatch: image %s is %dx%d but label %s is %dx%d (width x height)'
                        % (image_path, width, height, label_path, label.shape[1], label.shape[0]))
    label = remap_and_check_label(label, spec.table, spec.num_classes, IGNORE_LABEL, label_path)
    ok, label_png = cv2.imencode('.png', label)
    if not ok:
        raise PairError('cannot encode label %s as PNG' % label_path)
    example = make_example(encoded, image_format, label_png.tobytes(), height, width,
                           os.path.basename(image_path))
    return example.SerializeToString(), label, raw_values


def _encode_task(args):
    """Worker: (serialized, (class pixel counts [n+1], pixels of each label value as read
    [256]), shape) or (None, reason, None)."""
    image_path, label_path, spec = args
    try:
        serialized, label, raw_values = encode_pair(image_path, label_path, spec)
    except PairError as e:
        return None, str(e), None
    counts = np.bincount(label.ravel(), minlength=256)
    return (serialized, (np.append(counts[:spec.num_classes], counts[IGNORE_LABEL]), raw_values),
            label.shape)


def _write_part(args, on_pair=None):
    """Worker: encodes a contiguous chunk of pairs into its own record file (no payload goes
    back through the pipe); returns [(reason or None, counts, shape)] per pair."""
    part_path, pairs, spec = args
    results = []
    with tf.io.TFRecordWriter(part_path) as writer:
        for image_path, label_path in pairs:
            if on_pair:
                on_pair(1)
            serialized, info, shape = _encode_task((image_path, label_path, spec))
            if serialized is None:
                results.append((info, None, None))
            else:
                writer.write(serialized)
                results.append((None, info, shape))
    return results


def split_evenly(count, parts):
    """[(start, stop)] of `parts` contiguous ranges covering range(count)."""
    return [(count * i // parts, count * (i + 1) // parts) for i in range(parts)]


def median_frequency_weights(class_pixels, image_pixels):
    """SegNet's median-frequency balancing: freq(c) = pixels of c / pixels of the images holding
    c; weight(c) = median(freq) / freq(c). Classes never seen get weight 0."""
    class_pixels = np.asarray(class_pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    seen = (class_pixels > 0) & (image_pixels > 0)
    freq = np.zeros_like(class_pixels)
    freq[seen] = class_pixels[seen] / image_pixels[seen]
    weights = np.zeros_like(freq)
    if seen.any():
        weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights


def _worker_init():
    """A pool worker ends at once, quietly, on SIGTERM (as Pool.terminate expects). A handler
    the parent installed, inherited through fork, would raise in the worker too: each worker
    then printed a traceback when a conversion was stopped. The parent removes the worker's
    part file."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _map_parts(tasks, num_workers, progress):
    """Results of _write_part over `tasks`, in task order, by `num_workers` processes;
    `progress(number of pairs done)` is called as chunks complete."""
    if num_workers <= 1:  # in this process: progress pair by pair
        return [_write_part(task, progress) for task in tasks]

    # concurrent.futures, not multiprocessing.Pool: a Pool replaces a worker killed by a
    # signal (the out-of-memory killer's SIGKILL) and waits for its lost chunk for ever; an
    # executor reports it as BrokenProcessPool.
    executor = concurrent.futures.ProcessPoolExecutor(
        num_workers, mp_context=multiprocessing.get_context('fork'), initializer=_worker_init)
    futures, out = [], []
    try:
        futures = [executor.submit(_write_part, task) for task in tasks]
        for task, future in zip(tasks, futures):
            out.append(future.result())
            if progress:
                progress(len(task[1]))
        return out
    except concurrent.futures.process.BrokenProcessPool:
        raise DataError('a conversion worker process died before its part was written (killed, '
                        'as the out-of-memory killer does); nothing was written: rerun with '
                        'fewer --num_workers or with more free memory') from None
    finally:
        if len(out) < len(tasks):  # stopped or failed: no worker goes on writing parts
            for future in futures:
                future.cancel()
            for process in list((getattr(executor, '_processes', None) or {}).values()):
                if process.is_alive():
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


def _concatenate(parts, path):
    """TFRecord files concatenate byte-wise (each record carries its own length and CRCs)."""
    if len(parts) == 1:
        os.replace(parts[0], path)
        return
    with open(path, 'wb') as out:
        for part in parts:
            with open(part, 'rb') as f:
                size = os.fstat(f.fileno()).st_size
                copied = 0
                if hasattr(os, 'copy_file_range'):  # in the kernel, no user-space copy
                    try:
                        while copied < size:
                            done = os.copy_file_range(f.fileno(), out.fileno(), size - copied)
                            if not done:
                                break
                            copied += done
                    except OSError:
                        f.seek(copied)
                out.seek(0, os.SEEK_END)
                if copied < size:
                    shutil.copyfileobj(f, out, 1 << 22)


def _write_records(pairs, paths, spec, num_workers, strict, progress, log):
    """Encodes `pairs` into the record files `paths`, all or nothing.

    Shard k holds the k-th contiguous block of pairs, in input order, whatever the number of
    workers: each worker writes a contiguous chunk to a part file, and the parts are joined.
    Returns a Written.
    """
    n = spec.num_classes
    skipped, sizes, kept = [], [], []
    class_pixels = np.zeros(n + 1, np.int64)  # last bin: ignored pixels
    image_pixels = np.zeros(n, np.int64)  # labelled pixels of the images where a class occurs
    class_images = np.zeros(n, np.int64)  # images where a class occurs
    # One worker: one part per shard (renamed, not copied). Several: chunks of about
    # CHUNK_PAIRS pairs (progress), at least 4 per worker (balance).
    chunks = max(4 * num_workers, len(pairs) // CHUNK_PAIRS) if num_workers > 1 else 1
    chunks_per_shard = max(1, -(-chunks // len(paths)))
    parent = os.path.dirname(os.path.abspath(paths[0]))
    os.makedirs(parent, exist_ok=True)
    parts_dir = tempfile.mkdtemp(prefix='.%s.parts-' % os.path.basename(paths[0]),
                                 suffix='.tmp', dir=parent)
    try:
        tasks, owners = [], []
        for shard, (start, stop) in enumerate(split_evenly(len(pairs), len(paths))):
            for a, b in split_evenly(stop - start, chunks_per_shard):
                tasks.append((os.path.join(parts_dir, 'part-%05d' % len(tasks)),
                              pairs[start + a:start + b], spec))
                owners.append(shard)
        results = _map_parts(tasks, num_workers, progress)
        raw_values = np.zeros(256, np.int64)  # pixels of each label value as read
        for (_, chunk, _), chunk_results in zip(tasks, results):
            for (image_path, label_path), (reason, info, shape) in zip(chunk, chunk_results):
                if reason is not None:
                    skipped.append({'image': image_path, 'label': label_path, 'reason': reason})
                    log('skipped: %s' % reason)
                    continue
                sizes.append(shape)
                kept.append((image_path, label_path))
                class_pixels += info[0]
                image_pixels[info[0][:n] > 0] += info[0][:n].sum()
                class_images += info[0][:n] > 0
                raw_values += info[1]
        check_binary_masks(raw_values > 0, class_pixels, spec)
        reasons = ''.join('\n  ' + item['reason'] for item in skipped[:5])
        if strict and skipped:
            raise PairError('%d of %d pairs are unusable (--strict); nothing written to %s:%s'
                            % (len(skipped), len(pairs), paths[0], reasons))
        if not sizes:
            raise PairError('no usable image/label pair among %d; nothing written to %s:%s'
                            % (len(pairs), paths[0], reasons))
        paths, owners = drop_empty_shards(paths, owners, [r for rs in results for r in rs],
                                          [len(t[1]) for t in tasks], log)
        with contextlib.ExitStack() as stack:  # all shards renamed only if all were written
            tmp_paths = [stack.enter_context(atomic_path(p)) for p in paths]
            for shard, tmp_path in enumerate(tmp_paths):
                _concatenate([t[0] for t, o in zip(tasks, owners) if o == shard], tmp_path)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return Written(skipped, class_pixels, image_pixels, class_images, raw_values, sizes, kept,
                   paths)


def drop_empty_shards(paths, owners, pair_results, task_sizes, log):
    """Shards whose pairs were all skipped are left out and the rest renumbered (-of-N counts
    the shards written): returns (paths, each task's new shard or None)."""
    written = [0] * len(paths)
    pair = 0
    for owner, size in zip(owners, task_sizes):
        written[owner] += sum(1 for reason, _, _ in pair_results[pair:pair + size]
                              if reason is None)
        pair += size
    kept = [shard for shard in range(len(paths)) if written[shard]]
    if len(kept) == len(paths):
        return paths, owners
    log('%d of the %d shards would be empty (all their pairs were skipped): writing %d'
        % (len(paths) - len(kept), len(paths), len(kept)))
    output_path = SHARD_SUFFIX.sub('', paths[0])
    renumber = {old: new for new, old in enumerate(kept)}
    return shard_paths(output_path, len(kept)), [renumber.get(o) for o in owners]


def check_binary_masks(raw_values, class_pixels, spec):
    """Stops a conversion of 0/255 masks in which 255 is void: every class but 0 would get no
    pixel, without a word. The message gives the label map that makes 255 a class."""
    seen = set(np.flatnonzero(raw_values).tolist())
    if (seen == {0, 255} and spec.table[255] == IGNORE_LABEL and spec.num_classes >= 2
            and not class_pixels[1:spec.num_classes].any()):
        raise PairError('the labels hold only the values 0 and 255, and 255 is void in this '
                        'config, so classes 1..%d get no pixel. If 255 marks the foreground '
                        '(a binary mask), convert with --label_map 0:0,255:1'
                        % (spec.num_classes - 1))


def existing_outputs(output_path):
    """The files of an earlier conversion to `output_path`: its record file or shards (of any
    count), and its report."""
    shards = sorted(glob.glob(glob.escape(output_path) + SHARD_GLOB))
    return [path for path in [output_path] + shards + [report_path(output_path),
                                                       dataset_page_path(output_path)]
            if os.path.lexists(path)]


def check_output_path(output_path, overwrite):
    """Refuses a folder as `output_path`, and an earlier conversion there unless `overwrite`.

    Returns the earlier conversion's files (convert_pairs replaces them once the new one
    succeeded). Raises OutputError naming the path and the flag to pass.
    """
    if os.path.isdir(output_path) or output_path.endswith(os.sep):
        raise OutputError('--output_path %s is a folder; give the path of the record file to '
                          'write, e.g. %s' % (output_path, os.path.join(output_path,
                                                                        'train.record')))
    earlier = existing_outputs(output_path)
    if earlier and not overwrite:
        raise OutputError('--output_path %s exists from an earlier conversion (%s); pass '
                          '--overwrite to replace it, or choose another --output_path'
                          % (output_path, file_names(earlier)))
    return earlier


def file_names(paths, shown=3):
    """'a, b, c and 2 more': the base names of the first `shown` of `paths`."""
    names = ', '.join(os.path.basename(path) for path in paths[:shown])
    return names + (' and %d more' % (len(paths) - shown) if len(paths) > shown else '')


def remove_replaced(earlier, written, log):
    """Removes the files of the earlier conversion that this one did not rewrite (shards of
    another count, a single file now sharded): readers of the path would take them as current
    (utils.data.records.resolve_record_paths prefers the file of the exact name)."""
    stale = [path for path in earlier if path not in written]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    if stale:
        log('removed %s of the earlier conversion' % ', '.join(stale))


def make_report(pairs, spec, written, seconds):
    """The report of a conversion (see convert_pairs) from what _write_records returned."""
    skipped, class_pixels, image_pixels, sizes, paths = (
        written.skipped, written.class_pixels, written.image_pixels, written.sizes,
        written.paths)
    n = spec.num_classes
    size_counts = collections.Counter((int(h), int(w)) for h, w in sizes)
    labelled = class_pixels[:n].sum()
    return {
        'output_paths': paths,
        'pairs_found': len(pairs),
        'pairs_written': len(sizes),
        'pairs_skipped': len(skipped),
        'skipped': skipped,
        'num_classes': n,
        'ignore_label': IGNORE_LABEL,
        'min_size': [int(min(s[0] for s in sizes)), int(min(s[1] for s in sizes))],
        'max_size': [int(max(s[0] for s in sizes)), int(max(s[1] for s in sizes))],
        'class_pixel_counts': class_pixels[:n].tolist(),
        'class_frequencies': (class_pixels[:n] / max(labelled, 1)).round(6).tolist(),
        'class_image_counts': written.class_images.tolist(),
        'ignored_pixel_count': int(class_pixels[n]),
        # Each label value as read from the label files (after a colour map, before the label
        # map), its pixels and what it was stored as (a class id, or IGNORE_LABEL: void).
        'label_values': [{'value': int(v), 'pixels': int(written.raw_values[v]),
                          'stored_as': int(spec.table[v])}
                         for v in np.flatnonzero(written.raw_values)],
        'image_sizes': [{'height': h, 'width': w, 'count': c}
                        for (h, w), c in size_counts.most_common()],
        'median_frequency_weights': median_frequency_weights(class_pixels[:n],
                                                             image_pixels).round(4).tolist(),
        'seconds': round(seconds, 2),
        'images_per_second': round(len(pairs) / max(seconds, 1e-9), 2),
    }


def gallery_samples(pairs, spec, count=NUM_SAMPLES, seed=0):
    """[(image path, RGB image, label class ids)] of `count` pairs drawn at random (seeded) from
    the written `pairs`, one from each of `count` equal blocks of the input order (a dataset
    of video sequences shows several sequences, not four frames of one), decoded as the
    records store them."""
    rng = random.Random(seed)
    chosen = [rng.randrange(start, stop) for start, stop in
              split_evenly(len(pairs), min(count, len(pairs)))]
    samples = []
    for image_path, label_path in (pairs[i] for i in chosen):
        try:
            _, _, image, orientation = read_image(image_path, spec.max_image_pixels)
            label = read_pair_label(label_path, spec, image.shape[:2], orientation)
            label = remap_and_check_label(label, spec.table, spec.num_classes, IGNORE_LABEL,
                                          label_path)
        except (PairError, OSError):  # changed since it was written: not drawn
            continue
        samples.append((image_path, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label))
    return samples


def convert_pairs(pairs, output_path, spec, num_shards=1, num_workers=1, strict=False,
                  overwrite=True, log=print, progress=None, class_names=None, palette=None):
    """Writes every usable pair of `pairs` to `output_path` (or its shards); returns the report.

    The report (also saved as OUTPUT_PATH.report.json) counts written and skipped pairs, lists
    each skipped pair with its reason, the size range and sizes, per-class pixel counts,
    frequencies and image counts, the label values found, and median-frequency class weights;
    OUTPUT_PATH.dataset.html shows them with a gallery of random pairs (utils.data.dataset_page)
    drawn with `class_names` and `palette` (uint8 [n, 3]; default: class_K and the default
    palette). With `strict`, any unusable pair fails the conversion
    and nothing is written. An earlier conversion to `output_path` is replaced, once this one
    succeeded, only with `overwrite` (the library's default; the script's is to refuse).
    `progress(n)`, if given, is called with the number of pairs done (e.g. a tqdm bar's update).
    Raises DataError (no usable pair), OutputError (a folder or, without `overwrite`, an
    earlier conversion at `output_path`) or JobError (cannot write) when nothing could be
    written; earlier output is then untouched.
    """
    start = time.time()
    if num_shards > len(pairs):  # never an empty shard
        log('--num_shards %d is more than the %d pairs: writing %d shards'
            % (num_shards, len(pairs), len(pairs)))
        num_shards = max(len(pairs), 1)
    earlier = check_output_path(output_path, overwrite)
    if earlier:
        log('replacing the earlier conversion at %s (%s) once this one succeeds'
            % (output_path, file_names(earlier)))
    paths = shard_paths(output_path, num_shards)
    page_path = dataset_page_path(output_path)
    for path in paths + [report_path(output_path), page_path]:
        remove_stale_temporaries(path)
    try:
        written = _write_records(pairs, paths, spec, num_workers, strict, progress, log)
    except PairError as e:
        raise DataError(str(e)) from None
    except (OSError, tf.errors.OpError) as e:
        raise JobError('cannot write %s (%s); free some space or choose another '
                       '--output_path: earlier files there are untouched'
                       % (output_path, str(e).split('\n')[0])) from None
    report = make_report(pairs, spec, written, time.time() - start)
    names = list(class_names or ['class_%d' % c for c in range(spec.num_classes)])
    if palette is None:
        palette = default_palette(spec.num_classes)
    try:
        atomic_write_text(report_path(output_path), json.dumps(report, indent=2))
        write_dataset_page(page_path, report, gallery_samples(written.pairs, spec), names,
                           palette)
    except OSError as e:
        raise JobError('records written, but the report %s or the page %s could not be (%s)'
                       % (report_path(output_path), page_path, e)) from None
    remove_replaced(earlier, report['output_paths'] + [report_path(output_path), page_path],
                    log)
    return report
