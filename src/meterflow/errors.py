"""The root of meterflow's operational errors, each telling the operator what to do."""


class MeterflowError(Exception):
    """Root of every error meterflow raises on purpose; the message says what to do."""


class StackError(MeterflowError):
    """The local Kafka or Postgres could not be installed, started or stopped.

    The message names the log file to read; `meterflow down` then `meterflow up` retries
    from a clean process state without losing data.
    """


class ConfigurationError(MeterflowError):
    """A setting read from the environment is missing or malformed: fix the variable named."""
