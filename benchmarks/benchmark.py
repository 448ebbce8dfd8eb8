"""Benchmark: training throughput (real pipeline vs synthetic ceiling), utilisation of the
machine's matrix-multiply peak, inference latency through an exported model, dense CRF time,
conversion speed and peak memory; optionally the peers in ../shared/bench, run in the same
session, with ratios.

    python benchmarks/benchmark.py          # FCN-8s, 224x224 and 360x480, batch 4
    python benchmarks/benchmark.py --precisions float32,mixed_bfloat16 --peers ../shared/bench
    python benchmarks/benchmark.py --sections mobilenet --peers ../shared/bench
    python benchmarks/benchmark.py --sections crf --run_dir runs/camvid --dataset camvid_val.record
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from utils.startup import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from benchmarks import measurements as bench  # noqa: E402
from utils.cli import job_parser, list_of, positive_int, split_list  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.runtime import available_cpus, setup_tensorflow  # noqa: E402

SECTIONS = ('train', 'inference', 'mobilenet', 'crf', 'convert')
size_of = list_of(int, count=2, minimum=32, example='224,224')  # 'HEIGHT,WIDTH'


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--config', default=os.path.join(ROOT, 'configs', 'voc_fcn8s.yaml'))
    p.add_argument('--sizes', default='224,224;360,480', help='HEIGHT,WIDTH;...')
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--precisions', default='float32', help='float32,mixed_bfloat16,...')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--data_dir', default=os.path.join(ROOT, '..', 'shared', 'data', 'camvid'),
                   help='CamVid-layout data for the real pipeline and conversion (synthetic '
                        'scenes are generated when absent)')
    p.add_argument('--sections', default=','.join(SECTIONS))
    p.add_argument('--convert_repeats', type=positive_int, default=3,
                   help='conversions per worker count; the median is reported')
    p.add_argument('--peers', help='folder of the peer scripts (../shared/bench) to run too')
    p.add_argument('--run_dir', help='a trained run: the CRF section also times the CRF on its '
                   'real outputs and a validation of --dataset with and without CRF')
    p.add_argument('--dataset', help='TFRecord(s) for --run_dir (e.g. camvid_val.record)')
    return p.parse_args(argv)


def run_peer(script, *args, tries=2):
    """imgs_per_s printed by a peer script (run in its own process), or None, with a line
    saying why, when it printed none in `tries` runs (Keras 3 has been seen to abort with
    "malloc(): unaligned tcache chunk detected" once in a while)."""
    for _ in range(tries):
        out = subprocess.run([sys.executable, script] + list(args), capture_output=True,
                             text=True)
        match = re.search(r'imgs_per_s=([0-9.]+)', out.stdout)
        if match:
            return float(match.group(1))
    last = (out.stderr.strip().splitlines() or ['no output'])[-1]
    print('peer %s %s printed no imgs_per_s in %d runs (exit %d: %s)'
          % (os.path.basename(script), ' '.join(args), tries, out.returncode, last))
    return None


def prepare_data(args, work):
    """(data_dir, records) for the real pipeline: the given CamVid copy, or synthetic scenes."""
    from utils.data.demo import write_demo_dataset
    data_dir = args.data_dir
    config_path = os.path.join(ROOT, 'configs', 'camvid_fcn8s.yaml')
    if not os.path.isdir(os.path.join(data_dir, 'train')):
        data_dir = write_demo_dataset(os.path.join(work, 'scenes'), 64, 4, 360, 480)
        config_path = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
    records = os.path.join(work, 'train.record')
    bench.conversion_images_per_second(data_dir, 'train', 1, records, config_path)
    return data_dir, records, config_path


def train_section(args, records, config_path, peak):
    print('\n## Training FCN (%s), batch %d' % (os.path.basename(args.config), args.batch_size))
    print('| size | precision | real pipeline img/s | synthetic img/s | real/synthetic | '
          'GFLOPs/img (train) | utilisation of peak |')
    print('|---|---|---|---|---|---|---|')
    dataset_config = resolve_config(config_path)
    results = {}
    for size in split_list(args.sizes, ';'):
        height, width = size_of(size)
        base = resolve_config(args.config, {
            'crop_size': size, 'batch_size': str(args.batch_size), 'dataset_train': records,
            'num_classes': str(dataset_config.num_classes), 'min_scale': '1',
            'max_scale': '1'}, class_table=False)
        flops = bench.training_gflops_per_image(base)
        for precision in split_list(args.precisions):
            config = bench.with_overrides(base, precision=precision)
            real = bench.training_images_per_second(config, False, args.steps)
            synthetic = bench.training_images_per_second(config, True, args.steps)
            results[(size, precision)] = synthetic
            print('| %dx%d | %s | %.2f | %.2f | %.3f | %.1f | %.0f%% |'
                  % (height, width, precision, real, synthetic, real / synthetic, flops,
                     100 * flops * synthetic / peak))
    return results, dataset_config.num_classes


def inference_section(args, work):
    """ms/image at batch 1 of the config's network through an exported SavedModel."""
    from utils.deploy.export import benchmark_latency
    config = resolve_config(args.config)
    model = bench.exported_model(config, work, 'inference')
    print('\n## Inference (%s, exported SavedModel, class map), batch 1'
          % os.path.basename(args.config))
    print('| size | ms/image |\n|---|---|')
    for height, width in map(size_of, split_list(args.sizes, ';')):
        print('| %dx%d | %.1f |' % (height, width,
                                    benchmark_latency(model, height, width, 1, runs=10)))


def mobilenet_section(work):
    from utils.deploy.export import benchmark_latency
    config = resolve_config(os.path.join(ROOT, 'configs', 'cityscapes7_mobilenet_fcn.yaml'))
    model = bench.exported_model(config, work, 'mobilenet')
    results = {batch: 1000.0 / benchmark_latency(model, 320, 480, batch, runs=20)
               for batch in (4, 1)}
    print('\n## MobileNet v1 FCN (x0.5, 7x7 head, 7 classes) at 320x480, exported SavedModel')
    print('| batch | img/s |\n|---|---|')
    for batch, rate in results.items():
        print('| %d | %.1f |' % (batch, rate))
    return results


def crf_section(data_dir, run_dir=None, dataset=None):
    split = 'val' if os.path.isdir(os.path.join(data_dir, 'val')) else 'train'
    inputs = bench.crf_inputs(data_dir, split)
    height, width = inputs[0][0].shape[:2]
    print('\n## Dense CRF, %d classes, %d iterations (pydensecrf)'
          % (bench.CRF_CLASSES, bench.CRF_ITERATIONS))
    print('| input | ms/image |\n|---|---|')
    print('| %d %s images of %s, %dx%d, FCN-like scores | %.0f |'
          % (len(inputs), split, data_dir, height, width, bench.crf_ms_per_image(inputs)))
    print('| the same, all %d cores (CrfPool, as validation, evaluate.py and predict.py run it), '
          'wall | %.0f |' % (available_cpus(), bench.crf_pool_ms_per_image(inputs)))
    print('| uniform-noise 360x480 image, random scores (lattice worst case) | %.0f |'
          % bench.crf_ms_per_image([bench.noise_crf_input()], runs=3))
    if run_dir and dataset:
        config, real = bench.run_crf_inputs(run_dir, dataset)
        params = config.crf_params()
        what = '%d images of %s, real outputs of %s (its CRF settings)' % (
            len(real), dataset, run_dir)
        print('| %s | %.0f |' % (what, bench.crf_ms_per_image(real, params=params)))
        print('| the same, all %d cores (CrfPool), wall | %.0f |'
              % (available_cpus(), bench.crf_pool_ms_per_image(real, params=params)))
        rows = [(crf, bench.validation_seconds(run_dir, dataset, crf)) for crf in (False, True)]
        print('\n| validation of %s | images | wall s | s/image | mIoU |\n|---|---|---|---|---|'
              % dataset)
        for crf, (seconds, result) in rows:
            count = result['num_images']
            miou = result['crf']['mean_iou'] if crf else result['mean_iou']
            print('| %s | %d | %.1f | %.3f | %.4f |' % ('with CRF (all cores)' if crf else
                                                        'without CRF', count, seconds,
                                                        seconds / count, miou))


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()
    sections = split_list(args.sections)
    work = tempfile.mkdtemp(prefix='fcn-bench-')  # records, checkpoints, exports: ~300 MB
    try:
        run_sections(args, sections, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_sections(args, sections, work):
    peak = bench.gemm_peak_gflops()
    print('# Benchmark on %d CPU core(s); float32 matmul peak %.0f GFLOP/s'
          % (available_cpus(), peak))
    data_dir, records, config_path = prepare_data(args, work)
    trained = mobile = None
    if 'train' in sections:
        trained = train_section(args, records, config_path, peak)
    if 'inference' in sections:
        inference_section(args, work)
    if 'mobilenet' in sections:
        mobile = mobilenet_section(work)
    if 'crf' in sections:
        crf_section(data_dir, args.run_dir, args.dataset)
    if 'convert' in sections:
        rates = bench.conversion_rates(data_dir, 'train', (1, available_cpus()), work,
                                       config_path, args.convert_repeats)
        print('\n## Conversion (%s, median of %d): %s; scaling %.2fx' % (
            data_dir, args.convert_repeats,
            ', '.join('%d worker(s) %.1f img/s' % (n, r) for n, r in rates.items()),
            rates[available_cpus()] / rates[1]))
    print('\nPeak memory (RSS) of this process: %.0f MB' % bench.peak_rss_mb())
    if args.peers:
        print('\n## Peers (same session)')
        fcn = os.path.join(args.peers, 'peer_keras_fcn8s.py')
        if trained:
            results, num_classes = trained
            peers = {precision: run_peer(fcn, '--batch', str(args.batch_size), '--height', '224',
                                         '--width', '224', '--steps', '6', '--classes',
                                         str(num_classes), *flag)
                     for precision, flag in (('float32', []), ('mixed_bfloat16', ['--bf16']))
                     if ('224,224', precision) in results}
            peers = {precision: rate for precision, rate in peers.items() if rate}
            for precision in peers:
                ours = results[('224,224', precision)]
                print('FCN-8s train 224x224 %s: ours %.2f img/s; Keras 3 peer %s' % (
                    precision, ours, ', '.join(
                        '%s %.2f img/s (ratio %.2f)' % (peer_precision, rate, ours / rate)
                        for peer_precision, rate in peers.items())))
        if mobile:
            for batch in (4, 1):
                peer = run_peer(os.path.join(args.peers, 'peer_keras_mobilenet_fcn.py'),
                                '--batch', str(batch))
                if peer:
                    print('MobileNet FCN batch %d: ours %.1f img/s, Keras 3 peer %.1f img/s, '
                          'ratio %.2f' % (batch, mobile[batch], peer, mobile[batch] / peer))


if __name__ == '__main__':
    main()
