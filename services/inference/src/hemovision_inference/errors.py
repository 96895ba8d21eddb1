"""Inference domain errors (each knows its gRPC status)."""

import grpc

from hemovision_grpc_server import FailedPrecondition, InvalidArgument, NotFound, ServiceError, Unavailable


class BadTensor(InvalidArgument):
    """The images tensor is malformed or does not fit the model."""


class ModelNotFound(NotFound):
    """A model name this service does not serve."""


class VersionNotLoaded(FailedPrecondition):
    """The requested version is not loaded on the model server (not active, not draining)."""


class NoActiveModel(Unavailable):
    """No version is AVAILABLE and warm yet."""


class ModelServerUnavailable(Unavailable):
    """The model server cannot be reached (or did not answer within the deadline)."""


class SignatureMissing(ServiceError):
    """The version has no such signature (e.g. a model exported without `explain`)."""

    code = grpc.StatusCode.UNIMPLEMENTED
