"""Measurements for benchmarks/benchmark.py: training throughput (real TFRecord pipeline and
in-memory synthetic inputs), matrix-multiply peak, inference latency, CRF time, conversion
speed. Each function returns plain numbers; the script prints the table."""
import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.crf import CrfPool, dense_crf
from utils.data.layouts import camvid_pairs
from utils.data.records import report_path
from utils.deploy.export import export_model
from utils.deploy.operations import count_ops
from utils.deploy.saved_model import ExportedModel
from utils.deploy.serving import CLASSES_KEY
from utils.evaluation.crf_search import collect_probabilities
from utils.evaluation.scoring import evaluate
from utils.rundir import load_run
from utils.training.optimization import session_rewrites
from utils.runtime import session_config
from utils.training.graph import build_training_graph

# The CRF measurement: CamVid's classes, the iterations of the performance target.
CRF_CLASSES = 11
CRF_ITERATIONS = 5


def median_step_seconds(session, fetch, steps, warmup):
    for _ in range(warmup):
        session.run(fetch)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        session.run(fetch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@contextlib.contextmanager
def training_session(config, synthetic, inter_op_threads=0):
    """(session, step op) of a training graph of `config` (its crop_size and batch_size), its
    variables initialised, fed from its TFRecords or, with `synthetic`, from one in-memory
    batch (the compute ceiling); `inter_op_threads` ops at once (0: one per core)."""
    height, width = config.crop_size
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        dataset = None
        if synthetic:
            rng = np.random.RandomState(0)
            images = rng.uniform(-120, 130, (config.batch_size, height, width, 3)).astype(
                np.float32)
            labels = rng.randint(0, config.num_classes, (config.batch_size, height, width))
            dataset = tf.data.Dataset.from_tensors((images, labels.astype(np.int32))).repeat()
        ops = build_training_graph(config, lambda *_: None, dataset=dataset)
        proto = session_rewrites(session_config(), config.precision)
        proto.inter_op_parallelism_threads = inter_op_threads
        with tf.Session(config=proto) as session:
            session.run(tf.global_variables_initializer())
            yield session, ops.next_step['all']


def training_images_per_second(config, synthetic, steps=5, warmup=2):
    """Images/s of training steps of `config` (training_session's inputs)."""
    with training_session(config, synthetic) as (session, step):
        seconds = median_step_seconds(session, step, steps, warmup)
    return config.batch_size / seconds


def training_gflops_per_image(config):
    """GFLOPs of one training image of `config` at its crop_size: forward + backward, about
    three times the forward (count_ops)."""
    return 3 * sum(v for _, v in count_ops(tuple(config.crop_size), config.num_classes,
                                           **config.network_args())) / 1000


def gemm_peak_gflops(size=2048, runs=10):
    """Sustained float32 matrix-multiply GFLOP/s of this machine (as ../shared/bench/gemm_peak)."""
    with tf.Graph().as_default():
        a = tf.Variable(tf.random_normal([size, size]))
        b = tf.Variable(tf.random_normal([size, size]))
        product = tf.reduce_sum(tf.matmul(a, b))
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            seconds = median_step_seconds(session, product, runs, 2)
    return 2 * size ** 3 / seconds / 1e9


def exported_model(config, work, name):
    """The network of `config` with random weights, exported as a SavedModel under `work` and
    loaded back, fetching the class map only (as a deployment does)."""
    checkpoint = os.path.join(work, name, 'model.ckpt')
    with tf.Graph().as_default():
        build_network(tf.zeros([1, 64, 64, 3]), config.num_classes, False,
                      **config.network_args())
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver(tf.model_variables()).save(session, checkpoint)
    export_dir = os.path.join(work, name + '_export')
    export_model(config, checkpoint, export_dir)
    return ExportedModel(export_dir, outputs=(CLASSES_KEY,))


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def crf_inputs(data_dir, split, num_classes=CRF_CLASSES, count=10, stride=8):
    """(RGB image, probabilities) pairs from a CamVid-layout folder, with FCN-like
    probabilities: the annotation's one-hot scores averaged over stride x stride blocks,
    upsampled bilinearly (as FCN-8s's stride-8 scores are) and softened with noise, so the
    CRF sees real images and realistic, blurry class boundaries."""
    rng = np.random.RandomState(0)
    inputs = []
    for image_path, label_path in camvid_pairs(data_dir, split)[:count]:
        image = cv2.cvtColor(cv2.imread(image_path), cv2.COLOR_BGR2RGB)
        label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
        height, width = label.shape
        scores = np.eye(num_classes + 1, dtype=np.float32)[np.minimum(label, num_classes)]
        coarse = cv2.resize(scores[..., :num_classes], (width // stride, height // stride),
                            interpolation=cv2.INTER_AREA)
        logits = 4 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        logits += rng.normal(0, 1, logits.shape).astype(np.float32)
        inputs.append((image, _softmax(logits)))
    return inputs


def noise_crf_input(height=360, width=480, num_classes=CRF_CLASSES):
    """A uniform-noise image with per-pixel random scores: the worst case of the bilateral
    lattice (nearly every pixel its own lattice point), nothing a camera produces."""
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (height, width, 3), np.uint8)
    return image, _softmax(rng.randn(height, width, num_classes).astype(np.float32))


def crf_ms_per_image(inputs, iterations=CRF_ITERATIONS, runs=1, params=None):
    """Median ms of dense_crf over the (image, probabilities) `inputs`, after one warm-up;
    `params` (dense_crf's keyword arguments, e.g. Config.crf_params()) replace `iterations`."""
    params = params or {'crf_iterations': iterations}
    dense_crf(*inputs[0], **params)
    times = []
    for _ in range(runs):
        for image, probabilities in inputs:
            start = time.perf_counter()
            dense_crf(image, probabilities, **params)
            times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def crf_pool_ms_per_image(inputs, iterations=CRF_ITERATIONS, workers=None, params=None):
    """Wall ms per image of dense_crf over `inputs` on a CrfPool of `workers` (all cores)."""
    params = params or {'crf_iterations': iterations}
    with CrfPool(workers) as pool:
        list(pool.map(iter([(0,) + tuple(inputs[0])]), params))  # warm-up
        start = time.perf_counter()
        list(pool.map(((i, image, probs) for i, (image, probs) in enumerate(inputs)), params))
    return 1000 * (time.perf_counter() - start) / len(inputs)


def run_crf_inputs(run_dir, record_spec, count=40):
    """(config, [(image, probabilities)]): a trained run's own outputs (its best checkpoint) on
    the first `count` images of `record_spec`."""
    config, checkpoint = load_run(run_dir)
    samples = collect_probabilities(config, checkpoint, record_spec, count)
    return config, [(image, probabilities) for image, _, probabilities in samples]


def validation_seconds(run_dir, record_spec, crf):
    """(wall seconds, scores) of scoring every image of `record_spec` with a run's best
    checkpoint, as training's validation does (the CRF on all cores when `crf`)."""
    config, checkpoint = load_run(run_dir)
    config = dataclasses.replace(config, crf=crf)
    start = time.perf_counter()
    with CrfPool(None if crf else 1) as pool:
        result, _, _ = evaluate(config, checkpoint, record_spec, crf_pool=pool)
    return time.perf_counter() - start, result


def conversion_images_per_second(data_dir, split, num_workers, output_path, config_path):
    """Runs the converter as a user would and reads its images/s from the report."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, os.path.join(root, 'convert_fcn_dataset.py'),
                    '--dataset_format', 'camvid', '--data_dir', data_dir, '--split', split,
                    '--output_path', output_path, '--num_workers', str(num_workers),
                    '--config', config_path, '--overwrite'], check=True, capture_output=True)
    with open(report_path(output_path)) as f:
        return json.load(f)['images_per_second']


def conversion_rates(data_dir, split, worker_counts, work, config_path, repeats=3):
    """{workers: median images/s} over `repeats` conversions per worker count, interleaved so
    that a slow moment of the machine falls on all counts alike (one conversion of CamVid
    train takes 1-2 s, short enough for noise to matter)."""
    rates = {n: [] for n in worker_counts}
    for _ in range(repeats):
        for n in worker_counts:
            path = os.path.join(work, 'convert%d.record' % n)
            rates[n].append(conversion_images_per_second(data_dir, split, n, path, config_path))
    return {n: float(np.median(r)) for n, r in rates.items()}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def with_overrides(config, **changes):
    return dataclasses.replace(config, **changes)
