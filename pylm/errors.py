"""Typed exceptions. Each message names the offending value."""


class PylmError(Exception):
    """Base class of pylm's own errors."""


class GGUFError(PylmError, ValueError):
    """A GGUF file that cannot be read."""


class GGUFFormatError(GGUFError):
    """Malformed content: bad magic, bad offsets, duplicate names, absurd counts, ..."""


class GGUFTruncatedError(GGUFFormatError):
    """The file ends before the header, metadata or tensor data it declares."""


class GGUFUnsupportedError(GGUFError):
    """Well-formed but not supported: GGUF version, tensor type."""


class HubError(PylmError, RuntimeError):
    """`pylm pull` failed: pip could not fetch a package, or a wheel lacks the model file."""


class ChecksumError(HubError):
    """A downloaded model's SHA-256 differs from the expected one."""


class UnknownModelError(PylmError, ValueError):
    """A model name that is neither an existing path nor a known model."""
