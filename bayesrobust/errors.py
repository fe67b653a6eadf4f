"""The exceptions bayesrobust raises on bad input, each naming what is wrong."""


class BayesRobustError(Exception):
    """Base class of every error raised on purpose by bayesrobust."""


class DatasetError(BayesRobustError):
    """A data file is missing, corrupt, truncated or fails its checksum."""


class DatasetMissing(DatasetError):
    """A data file is not on this machine (and downloading was not asked for): a set a config lists as
    optional is then skipped and reported as not available."""


class CheckpointError(BayesRobustError):
    """A checkpoint is missing, corrupt, or belongs to another architecture."""


class ForeignCheckpoint(CheckpointError):
    """A readable weights file that bayesrobust did not write (a network's own state_dict, say)."""


class ConfigError(BayesRobustError):
    """A configuration has an unknown key, a wrong type or an invalid value."""


class InputError(BayesRobustError, ValueError):
    """Images or labels handed to a model or attack are malformed."""


class RunError(BayesRobustError):
    """A run folder cannot be created, resumed or read."""
