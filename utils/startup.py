"""A job's first import: TensorFlow without its start-up noise.

On machines without a CUDA GPU, TensorFlow prints the oneDNN banner twice, "Could not find cuda
drivers" and "failed call to cuInit: ... UNKNOWN ERROR (303)", which read like failures. The
banners come while its libraries load, before any log setting applies, so the import runs with
the process's stderr (file descriptor 2) sent to /dev/null; an import that fails still raises
its exception, printed after stderr is back. C++ log lines below errors are hidden
(TF_CPP_MIN_LOG_LEVEL=2), and on a machine without an NVIDIA driver the cuInit error too (3).
Settings already in the environment win.

    from utils.startup import import_tensorflow_quietly
    import_tensorflow_quietly()   # before any other import of the suite
"""
import os
import sys

NVIDIA_DEVICE = '/dev/nvidiactl'  # present where an NVIDIA driver is loaded


def import_tensorflow_quietly():
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL',
                          '2' if os.path.exists(NVIDIA_DEVICE) else '3')
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
        import tensorflow.compat.v1  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
