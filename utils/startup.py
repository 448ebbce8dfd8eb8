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
    missing = None
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
        import tensorflow.compat.v1  # noqa: F401
    except ModuleNotFoundError as e:
        missing = e.name
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    if missing:
        sys.exit(not_installed_message(missing))


def not_installed_message(module):
    """The one line for a job started by a Python without the project's packages (most often:
    the virtualenv is not active)."""
    venv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.venv')
    if os.path.isfile(os.path.join(venv, 'bin', 'python')):
        how = 'activate the project\'s virtualenv first: source %s/bin/activate' % venv
    else:
        how = 'set it up first: make setup (creates %s), then source %s/bin/activate' % (venv,
                                                                                       venv)
    return 'error: %s is not installed for %s; %s' % (module, sys.executable, how)
