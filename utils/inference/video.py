"""Prediction on video: a file OpenCV reads (any container/codec its FFmpeg knows) or a camera
index, to an overlay video with every frame, at the same size and frame rate.

Frames are decoded on a thread of their own while the model runs on batches of them.

    frames = predict_video(predictor, 'clip.mp4', 'out', batch_size=4)   # out/clip_overlay.mp4
"""
import os
import queue
import threading

import cv2
import numpy as np

from utils.errors import DataError
from utils.fileio import atomic_path, atomic_write_bytes, output_error
from utils.inference.image_files import full_size_class_map, predict_capped
from utils.visualization import make_palette, overlay

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv')
FOURCC = 'mp4v'  # MPEG-4 part 2: written by the FFmpeg inside opencv-python-headless
DEFAULT_FPS = 25.0  # for cameras that report none
_END = object()


def is_video(spec):
    """A camera index ('0') or a path with a video extension."""
    return spec.isdigit() or os.path.splitext(spec)[1].lower() in VIDEO_EXTENSIONS


def video_name(spec):
    return 'camera%s' % spec if spec.isdigit() else os.path.splitext(os.path.basename(spec))[0]


def open_video(spec):
    capture = cv2.VideoCapture(int(spec) if spec.isdigit() else spec)
    if not capture.isOpened():
        raise DataError('cannot open video %s (no such file or camera, or a codec OpenCV does '
                        'not read)' % spec)
    return capture


def read_batches(capture, batch_size, frames):
    """Puts lists of up to `batch_size` RGB frames of one size on the queue `frames`, then
    _END (a thread: decoding overlaps inference). A decoder error is put on the queue as a
    DataError before _END, so that the reader of the queue never waits for ever."""
    batch = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frame = frame[..., ::-1]
            if batch and frame.shape != batch[0].shape:
                frames.put(batch)
                batch = []
            batch.append(frame)
            if len(batch) == batch_size:
                frames.put(batch)
                batch = []
        if batch:
            frames.put(batch)
    except cv2.error as e:
        frames.put(DataError('a frame does not decode (%s)' % str(e).strip().split('\n')[-1]))
    finally:
        frames.put(_END)


def class_maps(predictor, batch, crf_pool, max_side):
    """Class maps of a batch of same-size RGB frames (CRF on the pool when given)."""
    if max_side and max(batch[0].shape[:2]) > max_side:
        runs = [predict_capped(predictor, frame, max_side) for frame in batch]
    else:
        runs = list(zip(batch, predictor.predict_batch(np.stack(batch))))
    if crf_pool is None:
        return [full_size_class_map(probs, frame.shape) for frame, (_, probs)
                in zip(batch, runs)]
    refined = crf_pool.map(((frame, small, probs) for frame, (small, probs) in zip(batch, runs)),
                           predictor.config.crf_params())
    return [full_size_class_map(None, frame.shape, crf_map) for frame, crf_map in refined]


def predict_video(predictor, spec, output_dir, batch_size=4, crf_pool=None, max_side=0,
                  save_class_maps=False, progress=None):
    """Writes OUTPUT_DIR/NAME_overlay.mp4 (and with `save_class_maps`, NAME_frames/
    NNNNNN_label.png per frame); returns the number of frames. `progress(n)` is called per
    batch with its number of frames."""
    config = predictor.config
    palette = make_palette(config.class_colors, config.num_classes)
    capture = open_video(spec)
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    name = video_name(spec)
    frames = queue.Queue(maxsize=4)
    reader = threading.Thread(target=read_batches, args=(capture, batch_size, frames),
                              daemon=True)
    reader.start()
    path = os.path.join(output_dir, name + '_overlay.mp4')
    count = 0
    with atomic_path(path) as tmp_path:
        writer = None
        try:  # the writer picks its container by extension: written as .mp4, then renamed
            for batch in iter(frames.get, _END):
                if isinstance(batch, DataError):
                    raise DataError('video %s: %s' % (spec, batch))
                if writer is None:
                    height, width = batch[0].shape[:2]
                    writer = cv2.VideoWriter(tmp_path + '.mp4', cv2.VideoWriter_fourcc(*FOURCC),
                                             fps, (width, height))
                    if not writer.isOpened():
                        raise output_error(path, OSError(0, 'the video writer did not open'))
                for frame, class_map in zip(batch, class_maps(predictor, batch, crf_pool,
                                                              max_side)):
                    writer.write(np.ascontiguousarray(
                        overlay(frame, class_map, palette, config.overlay_alpha)[..., ::-1]))
                    if save_class_maps:
                        atomic_write_bytes(os.path.join(output_dir, name + '_frames',
                                                        '%06d_label.png' % count),
                                           cv2.imencode('.png', class_map.astype(np.uint8))[1]
                                           .tobytes())
                    count += 1
                if progress:
                    progress(len(batch))
            if not count:
                raise DataError('video %s has no frame OpenCV can decode' % spec)
            writer.release()
            os.replace(tmp_path + '.mp4', tmp_path)
        finally:
            if writer is not None:
                writer.release()
            capture.release()
            if os.path.exists(tmp_path + '.mp4'):
                os.remove(tmp_path + '.mp4')
    return count
