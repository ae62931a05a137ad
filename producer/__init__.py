"""Producer side of genesys-closer: a Python API and a thin command line. Needs only Redis."""

from genesys_closer.producer.api import (
    Batch,
    BatchIdInUse,
    BatchNotFound,
    CloseClient,
    InvalidArgument,
    InvalidBatch,
    close,
    close_conversation,
    close_many,
)

__all__ = ["Batch", "BatchIdInUse", "BatchNotFound", "CloseClient", "InvalidArgument", "InvalidBatch", "close",
           "close_conversation", "close_many"]
