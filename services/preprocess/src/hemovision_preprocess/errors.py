"""Preprocess errors."""

from __future__ import annotations

from hemovision_grpc_server import InvalidArgument


class ImageInvalid(InvalidArgument):
    """The image is not one we accept. PreprocessBatch answers it per item as a PreprocessError
    (reason, message), which inference passes on and the gateway maps to 413/415/422; a single
    Preprocess call fails INVALID_ARGUMENT with the reason code in brackets at the start of the
    message, e.g. "[too_large] ...", so a caller can tell the reason without parsing prose."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"[{reason}] {message}")
        self.reason = reason
        self.detail = message


class SpecInvalid(InvalidArgument):
    """The preprocessing spec in the request is not valid."""
