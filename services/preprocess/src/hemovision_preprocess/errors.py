"""Preprocess errors."""

from __future__ import annotations

from hemovision_grpc_server import InvalidArgument


class ImageInvalid(InvalidArgument):
    """The upload is not an image we accept. The message starts with the reason code in
    brackets, e.g. "[too_large] ...", so the gateway can pick 413/415/422 without parsing prose."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"[{reason}] {message}")
        self.reason = reason
        self.detail = message


class SpecInvalid(InvalidArgument):
    """The preprocessing spec in the request is not valid."""
