"""An example Taskmaster middleware plugin: an audit line per job, in a file."""

from .middleware import AUDIT_FILE_ENV, AuditMiddleware

__all__ = ["AUDIT_FILE_ENV", "AuditMiddleware"]
