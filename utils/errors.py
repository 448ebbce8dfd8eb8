"""The errors a job reports to its user as one line (`error: ...`, exit status 1).

Each names the file, flag or value at fault and says what to do. Anything else that escapes a
job is a bug and keeps its traceback.
"""


class JobError(Exception):
    """Base of the user-facing errors; scripts catch this (and OSError) in one place."""


class ConfigError(JobError, ValueError):
    """A configuration value or file is wrong."""


class CheckpointError(JobError, ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class DataError(JobError, ValueError):
    """Input data cannot be used: TFRecords that are empty, unreadable, of another schema or
    class count; a dataset whose pairs are all unusable; a malformed list file."""


class OutputError(JobError, OSError):
    """A file or folder cannot be written (full disk, read-only, a file in the way)."""


class TrainingError(JobError, RuntimeError):
    """The run cannot go on (non-finite loss, unwritable checkpoint, ...)."""


def error_reason(error):
    """The line of an exception's message that says what went wrong.

    A session run's tf.errors.OpError reads 'Graph execution error:', 'Detected at node ...',
    a Python stack and 'Node: ...' before its reason ('Read less bytes than requested', 'No
    space left on device'); other errors give their first line.
    """
    lines = [line.strip() for line in getattr(error, 'message', str(error)).split('\n')]
    for line in lines:
        if line and not (line == 'Graph execution error:' or line.startswith(
                ('Detected at node', 'File "', 'Node: ', '[[', 'Original stack trace'))):
            return line
    return lines[0] if lines else type(error).__name__
