"""Process and session set-up shared by the jobs (called from their main(), never on import)."""
import logging
import multiprocessing
import os
import subprocess
import sys
import warnings

import tensorflow.compat.v1 as tf


def setup_tensorflow():
    """TF1 graph mode, and TensorFlow's deprecation chatter kept out of users' logs."""
    tf.disable_eager_execution()
    tf.logging.set_verbosity(tf.logging.ERROR)
    warnings.filterwarnings('ignore', message='.*layer.apply.*is deprecated')


def make_logger(name):
    """A timestamped logger on stdout; returns its info method."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', stream=sys.stdout)
    return logging.getLogger(name).info


def available_cpus():
    """The cores this process may run on (its affinity), else all of the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
        multiprocessing.cpu_count())


BFLOAT16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')  # /proc/cpuinfo flags of bfloat16 units


def cpu_bfloat16_flags(cpuinfo='/proc/cpuinfo'):
    """The bfloat16 flags this CPU reports (none where /proc/cpuinfo cannot be read)."""
    try:
        with open(cpuinfo) as f:
            flags = set(next((line for line in f if line.startswith('flags')), '').split())
    except OSError:
        return ()
    return tuple(flag for flag in BFLOAT16_CPU_FLAGS if flag in flags)


def cpu_class(cpuinfo='/proc/cpuinfo', environ=None):
    """'MODEL NAME, N cores, AVX512-BF16' (or 'AVX2 only', or 'AVX2 class by
    ONEDNN_MAX_CPU_ISA=AVX2'): the class of CPU that figures measured here come from."""
    model = ''
    try:
        with open(cpuinfo) as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), '')
    except OSError:
        pass
    capped = onednn_isa_cap(os.environ if environ is None else environ)
    bfloat16 = cpu_bfloat16_flags(cpuinfo)
    if bfloat16 and cpuid_shows_avx512() is False:
        kind = 'AVX2 class (CPUID masked: benchmarks/avx2_class)'
    elif bfloat16 and capped:
        kind = 'AVX2 class for TensorFlow by ONEDNN_MAX_CPU_ISA=%s' % capped
    else:
        kind = 'AVX512-BF16' if bfloat16 else 'no bfloat16 (AVX2 class)'
    return '%s, %d cores, %s' % (model or 'unknown CPU', os.cpu_count() or 1, kind)


def cpuid_shows_avx512():
    """Whether this process's CPUID reports AVX-512 (as numpy's dispatch reads it; None where
    numpy does not say): False on AVX2 CPUs, and under benchmarks/avx2_class, which masks it
    for every library of the process while /proc/cpuinfo still lists it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        return None
    return features.get('AVX512F')


def resolve_precision(precision, distribution='none', gpus=None, bf16_flags=None, environ=None):
    """Precision 'auto' -> (concrete precision, why); others come back as they are.

    auto: mixed_bfloat16 where no GPU is visible, the CPU has bfloat16 units (measured here:
    1.5x the float32 images/s, no worse validation mIoU), ONEDNN_MAX_CPU_ISA in `environ` does
    not cap oneDNN below them, and the job is not multi-worker (the oneDNN bfloat16 rewrite
    makes kernels the worker runtime lacks), else float32."""
    if precision != 'auto':
        return precision, 'as configured'
    if distribution == 'multi_worker':
        return 'float32', 'auto: multi-worker training runs in float32'
    if gpus is None:
        import tensorflow
        gpus = tensorflow.config.list_physical_devices('GPU')
    if gpus:
        return 'float32', 'auto: a GPU is visible (mixed_float16 is the GPU option)'
    flags = cpu_bfloat16_flags() if bf16_flags is None else bf16_flags
    capped = onednn_isa_cap(os.environ if environ is None else environ)
    if flags and capped:
        return 'float32', ('auto: ONEDNN_MAX_CPU_ISA=%s keeps oneDNN below the bfloat16 '
                           'instructions the CPU has' % capped)
    if flags:
        return 'mixed_bfloat16', 'auto: the CPU has %s' % ', '.join(flags)
    return 'float32', 'auto: the CPU has no bfloat16 units'


# oneDNN's instruction-set names (ONEDNN_MAX_CPU_ISA) that include bfloat16 arithmetic; the
# variable set to any other (SSE41, AVX, AVX2, AVX2_VNNI, AVX512_CORE, AVX512_CORE_VNNI, ...)
# makes TensorFlow's oneDNN kernels behave as on a CPU without bfloat16.
BFLOAT16_ISAS = ('AVX512_CORE_BF16', 'AVX512_CORE_FP16', 'AVX512_CORE_AMX',
                 'AVX512_CORE_AMX_FP16', 'AVX10_1_512', 'AVX10_1_512_AMX',
                 'AVX10_1_512_AMX_FP16', 'AVX10_2_512', 'AVX10_2_512_AMX_2', 'ALL', 'DEFAULT')


def onednn_isa_cap(environ=os.environ):
    """The ONEDNN_MAX_CPU_ISA value when it caps oneDNN below bfloat16, else None."""
    value = environ.get('ONEDNN_MAX_CPU_ISA', environ.get('DNNL_MAX_CPU_ISA', '')).strip()
    return value if value and value.upper() not in BFLOAT16_ISAS else None


def available_memory_bytes(meminfo='/proc/meminfo'):
    """MemAvailable of this machine in bytes, or None where /proc/meminfo cannot be read."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def session_config(devices=()):
    """No device is pinned: ops go to a GPU (cuDNN) when there is one, else to the CPU.

    `devices` naming several CPUs ('/cpu:0', '/cpu:1') makes that many logical CPU devices
    (for data-parallel runs and their tests on machines without GPUs)."""
    cpus = sum(1 for d in devices if 'cpu' in d.lower())
    proto = tf.ConfigProto(allow_soft_placement=True,
                           device_count={'CPU': cpus} if cpus > 1 else None)
    proto.gpu_options.allow_growth = True
    return proto


def code_version(root=None):
    """The repository's commit as `git describe --always --dirty` gives it ('51a12f3-dirty'
    when files were changed), or 'unknown' outside a git checkout or without git: what the
    report pages name as the code that produced them."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        result = subprocess.run(['git', '-C', root, 'describe', '--always', '--dirty'],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 'unknown'
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else (
        'unknown')
