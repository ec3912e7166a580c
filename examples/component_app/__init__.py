"""The original Taskmaster's component-style app, in Python.

``app.py`` builds a consumer together with its dependencies (a database and a
mailer) and hands them to the handler through ``job.context``. Run the worker
with ``taskmaster --url postgresql://… worker examples.component_app.app:make_consumers``
from the repository root, or ``python -m examples.component_app`` for a demo
on the memory broker.
"""
