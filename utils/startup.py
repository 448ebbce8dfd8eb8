"""A job's first import: TensorFlow without its start-up noise.

On machines without a CUDA GPU, TensorFlow prints the oneDNN banner twice, "Could not find cuda
drivers" and "failed call to cuInit: ... UNKNOWN ERROR (303)", which read like failures. The
banners come while its libraries load, before any log setting applies, so the import runs with
the process's stderr (file descriptor 2) captured (`captured_stderr`, which also keeps the
TFLite converter's chatter off the console); an import that fails shows what was captured and
raises its exception. C++ log lines below errors are hidden
(TF_CPP_MIN_LOG_LEVEL=2), and on a machine without an NVIDIA driver the cuInit error too (3).
Settings already in the environment win.

    from utils.startup import import_tensorflow_quietly
    import_tensorflow_quietly()   # before any other import of the suite
"""
import contextlib
import os
import sys
import tempfile

NVIDIA_DEVICE = '/dev/nvidiactl'  # present where an NVIDIA driver is loaded


@contextlib.contextmanager
def captured_stderr():
    """Sends the process's file descriptor 2 (where C++ libraries print: TensorFlow's banners,
    the TFLite converter's `fully_quantize: 0, ...`, LiteRT's delegate line) to an unnamed
    temporary file for the block, and yields a callable that returns what was captured so far.
    When the block raises, the captured text is printed to stderr before the exception goes on,
    so a failure keeps its explanation; else it is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    capture = tempfile.TemporaryFile()  # unnamed: nothing is left behind
    os.dup2(capture.fileno(), 2)

    def text():
        capture.flush()
        with open(capture.fileno(), 'rb', closefd=False) as f:
            f.seek(0)
            return f.read().decode('utf-8', 'replace')
    try:
        yield text
    except BaseException:
        captured = text()
        os.dup2(saved, 2)
        if captured.strip():
            sys.stderr.write(captured)
            sys.stderr.flush()
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        capture.close()


def import_tensorflow_quietly():
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL',
                          '2' if os.path.exists(NVIDIA_DEVICE) else '3')
    try:
        with captured_stderr():
            import tensorflow  # noqa: F401
            import tensorflow.compat.v1  # noqa: F401
    except ModuleNotFoundError as e:
        sys.exit(not_installed_message(e.name))


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
