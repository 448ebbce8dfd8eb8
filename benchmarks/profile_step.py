"""Where a training step's time goes: one FCN training step (one in-memory batch, as the
benchmark's synthetic ceiling) traced by TensorFlow's step statistics, summed by op type and by
part of the network (forward, backward, optimizer), with each part's share of the kernels' time
and the wall time of the traced and untraced steps.

    python benchmarks/profile_step.py                        # FCN-8s (fc 4096), 224x224, batch 4
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py --top 25    # the AVX2 class

Kernels run on both cores at once and overlap, so the kernel times add up to more than the wall
time; the shares say where the work is. `--precision`, `--size`, `--batch_size`, `--config`
choose what is traced.
"""
import collections
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from utils.startup import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import tensorflow.compat.v1 as tf  # noqa: E402

from utils.cli import job_parser, list_of, positive_int, run_job  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402
from benchmarks.measurements import (gemm_peak_gflops, median_step_seconds,  # noqa: E402
                                     training_gflops_per_image, training_session)

size_of = list_of(int, count=2, minimum=32, example='224,224')


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--config', default=os.path.join(ROOT, 'configs', 'voc_fcn8s.yaml'))
    p.add_argument('--size', type=size_of, default=[224, 224], help='HEIGHT,WIDTH')
    p.add_argument('--batch_size', type=positive_int, default=4)
    p.add_argument('--precision', default='float32')
    p.add_argument('--steps', type=positive_int, default=5, help='untraced steps timed')
    p.add_argument('--top', type=positive_int, default=15, help='op types and nodes listed')
    p.add_argument('--inter_op_threads', type=int, default=0,
                   help='ops run at once (0: TensorFlow\'s default, one per core)')
    return p.parse_args(argv)


def part_of(name):
    """'forward', 'backward' or 'optimizer' for a node name of the training graph."""
    head = name.split('/')
    if 'gradients' in head[0] or any(h.startswith('gradients') for h in head[:2]):
        return 'backward'
    if any(h.startswith(('Adam', 'Momentum', 'RMSProp')) for h in head) or head[0] == 'train':
        return 'optimizer'
    return 'forward'


def layer_of(name):
    """The network layer a node belongs to (vgg_16/conv3/conv3_2, fcn/upscore8, ...)."""
    parts = [p for p in name.split('/') if not p.startswith('gradients')]
    for i, part in enumerate(parts):
        if part in ('vgg_16', 'fcn', 'MobilenetV1', 'InceptionV3'):
            return '/'.join(parts[i:i + 3] if part == 'vgg_16' else parts[i:i + 2])
    return parts[0] if parts else name


def kernel_times(step_stats):
    """[(node name, op type, microseconds)] of every kernel the step ran on the CPU."""
    rows = []
    for device in step_stats.dev_stats:
        for node in device.node_stats:
            op_type = node.timeline_label.split('(')[0].split(' = ')[-1].strip() \
                if ' = ' in node.timeline_label else node.node_name.split('/')[-1]
            # oneDNN's rewritten kernels (_MklNativeConv2D, ...) under the op's own name.
            rows.append((node.node_name, re.sub(r'^_Mkl(Native)?', '', op_type),
                         node.all_end_rel_micros))
    return rows


def print_table(title, totals, total, top):
    print('\n| %s | ms/step | share |\n|---|---|---|' % title)
    for key, micros in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        print('| %s | %.1f | %.1f%% |' % (key, micros / 1000, 100 * micros / total))


def main(argv=None):
    args = parse_args(argv)
    return run_job(lambda: profile(args))


def profile(args):
    setup_tensorflow()
    height, width = args.size
    config = resolve_config(args.config, {
        'crop_size': '%d,%d' % (height, width), 'batch_size': str(args.batch_size),
        'precision': args.precision, 'dataset_train': 'unused.record'}, class_table=False)
    peak = gemm_peak_gflops()
    with training_session(config, True, args.inter_op_threads) as (session, step):
        wall = median_step_seconds(session, step, args.steps, 2)
        metadata = tf.RunMetadata()
        start = time.perf_counter()
        session.run(step, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                    run_metadata=metadata)
        traced = time.perf_counter() - start
    rows = kernel_times(metadata.step_stats)
    total = sum(m for _, _, m in rows)
    by_type, by_part, by_layer, by_node = (collections.Counter() for _ in range(4))
    for name, op_type, micros in rows:
        part = part_of(name)
        by_node['%s (%s)' % (name, op_type)] += micros
        by_type[op_type] += micros
        by_part[part] += micros
        by_layer['%s %s' % (part, layer_of(name))] += micros
    flops = training_gflops_per_image(config) * args.batch_size
    print('# %s, %dx%d, batch %d, %s; float32 matmul peak %.0f GFLOP/s' % (
        os.path.basename(args.config), height, width, args.batch_size, args.precision, peak))
    print('Step: %.0f ms median of %d (%.2f img/s, %.0f GFLOP/s = %.0f%% of the peak); traced '
          'step %.0f ms; kernel time %.0f ms (%.2f cores busy)' % (
              1000 * wall, args.steps, args.batch_size / wall, flops / wall,
              100 * flops / wall / peak, 1000 * traced, total / 1000, total / 1e6 / traced))
    print_table('part', by_part, total, args.top)
    print_table('op type', by_type, total, args.top)
    print_table('part and layer', by_layer, total, args.top)
    print_table('node', by_node, total, args.top)


if __name__ == '__main__':
    sys.exit(main())
