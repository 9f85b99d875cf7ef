"""Numerical kernels: the selective scan and its backends."""

from .selective_scan import (
    available_backends,
    check_scan_args,
    register_backend,
    scan_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
)

__all__ = [
    "available_backends",
    "check_scan_args",
    "register_backend",
    "scan_backend",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_ref",
]
