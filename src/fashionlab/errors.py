"""Errors raised for bad user input: each message names the file, key or value at fault."""


class FashionlabError(Exception):
    """Base class for errors caused by configuration or input data."""


class ConfigError(FashionlabError, ValueError):
    """A configuration key holds a value that cannot be used."""


class UnsafeConfigError(ConfigError):
    """A config read from a file (checkpoint, manifest.json) names something loading may not build."""


class DataNotFoundError(FashionlabError, FileNotFoundError):
    """A dataset's files are missing and could not be obtained."""


class DataFormatError(FashionlabError, ValueError):
    """A data file exists but does not follow its format."""


class UnknownBackboneError(FashionlabError, KeyError):
    """The requested backbone is not a timm model."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PretrainedWeightsNotFoundError(FashionlabError, FileNotFoundError):
    """Pretrained weights were requested but none could be found locally."""


class BadImageError(DataFormatError):
    """An image file is missing, unreadable, truncated, corrupt or a decompression bomb."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class CheckpointError(FashionlabError, ValueError):
    """A checkpoint file is missing, unreadable or lacks what a project checkpoint holds."""


class ManifestMismatchError(FashionlabError, ValueError):
    """An index was built from another model or other data than the one in use."""


class RunFolderError(FashionlabError, FileNotFoundError):
    """A folder given as a training run is not one (no metrics.json) and holds no runs."""


class DataChangedError(FashionlabError, ValueError):
    """The data differs from the data a checkpoint was trained on (fingerprint or split items)."""


class CacheError(FashionlabError, ValueError):
    """A data cache holds what this project never writes (e.g. a pickle serializer), or differs
    from its completion record (a damaged or altered chunk, index or count)."""


class DistributedJoinError(FashionlabError):
    """A process of a multi-process launch could not join the others (training.join_timeout_s)."""
