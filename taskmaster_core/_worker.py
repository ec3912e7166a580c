"""``taskmaster worker``: run the consumers an application defines.

``APP`` is ``module:attribute``, naming one of

- a ``Consumer`` or a list/tuple of them (built with their own broker), or
- a factory: a callable taking the broker opened from ``--url`` and returning
  a ``Consumer`` or a list of them.

``--queues`` selects the consumers that serve those queues (a consumer
serving several keeps only the selected ones); it never gives a queue to a
consumer, and so a handler, the application did not give it.

The first SIGTERM or SIGINT stops gracefully: no more claims, unstarted jobs
go back to their queue, running handlers get ``stop_timeout`` seconds to
finish. A second signal stops waiting for handlers at once (unstarted jobs
are still returned). A consumer that dies (one of its threads failed with
an unexpected exception: see ``Consumer.healthy``) stops the worker the same
way, at once. Exit status: 0 stopped cleanly, 3 some handlers were still
running when the worker gave up on them (their jobs are retried once their
lease expires), 4 a consumer died.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ._broker import Broker, PausesQueues
from ._consumer import Consumer
from ._errors import ConfigurationError
from ._job import Job
from ._outcomes import Ack, Reject, Retry

__all__ = ["EXIT_CONSUMER_DIED", "EXIT_HANDLERS_ABANDONED", "load_app", "run_worker"]

logger = logging.getLogger("taskmaster.worker")

EXIT_HANDLERS_ABANDONED = 3
EXIT_CONSUMER_DIED = 4
_FLUSH_GRACE = 5.0
"""Seconds a consumer's own stop may take to flush once hurried."""


def load_app(
    spec: str,
    broker_factory: Callable[[], Broker],
    *,
    queues: Sequence[str] | None = None,
    concurrency: int | None = None,
) -> list[Consumer]:
    """Resolve ``module:attribute`` to consumers (see the module docstring).
    ``queues`` selects the consumers serving those queues (see ``_select``);
    ``concurrency`` overrides the selected consumers' own."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"APP must look like 'package.module:attribute', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attribute!r}") from None
    if isinstance(target, Consumer | list | tuple):
        found: Any = target
    elif callable(target):
        found = _call_factory(target, spec, broker_factory)
    else:
        raise ConfigurationError(f"{_APP_MUST_BE}{spec} is a {type(target).__name__}")
    if isinstance(found, Ack | Reject | Retry):
        raise ConfigurationError(
            f"{_APP_MUST_BE}{spec} looks like a handler (called with the broker, it returned "
            f"{found!r}, a job's outcome)"
        )
    if isinstance(found, Consumer):
        consumers = [found]
    elif isinstance(found, list | tuple):
        consumers = list(found)
    else:
        consumers = []
    if not consumers or not all(isinstance(c, Consumer) for c in consumers):
        raise ConfigurationError(
            f"{_APP_MUST_BE}{spec} did not give Consumer objects (got {found!r})"
        )
    if queues:
        consumers = _select(consumers, queues, spec)
    if concurrency is not None:
        consumers = [c.replace(concurrency=concurrency) for c in consumers]
    return consumers


_APP_MUST_BE = (
    "APP must be a Consumer, a list of consumers, or a factory taking the broker and "
    "returning them; "
)
_JOB_ATTRIBUTES = frozenset(
    name for name in (*Job.__slots__, *dir(Job)) if not name.startswith("_")
)


def _call_factory(
    factory: Callable[..., Any], spec: str, broker_factory: Callable[[], Broker]
) -> Any:
    """``factory(broker)``, unless ``factory`` is a handler given by mistake
    (a ConfigurationError saying what APP must be). A handler is told by its
    parameter's annotation (``Job``) before anything runs; an unannotated one
    by the AttributeError it raises reading a job attribute off the broker.
    Any other error is the factory's own: it propagates as it is, traceback
    and all, with a note naming APP."""
    reason = _handler_signature(factory)
    if reason is not None:
        raise ConfigurationError(f"{_APP_MUST_BE}{spec} looks like a handler ({reason})")
    broker = broker_factory()
    try:
        return factory(broker)
    except Exception as exc:
        if isinstance(exc, AttributeError) and exc.obj is broker and exc.name in _JOB_ATTRIBUTES:
            raise ConfigurationError(
                f"{_APP_MUST_BE}{spec} looks like a handler (called with the broker, it read "
                f"the broker's .{exc.name}, an attribute of a job)"
            ) from exc
        exc.add_note(f"while calling {spec} (the worker's APP) with the broker")
        raise


def _handler_signature(target: Callable[..., Any]) -> str | None:
    """Why ``target``'s signature is a handler's (its first parameter is
    annotated ``Job``), or ``None``."""
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not parameters or parameters[0].kind not in positional:
        return None
    first = parameters[0]
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # e.g. a name imported only under TYPE_CHECKING: read the text
        hints = {}
    annotation = hints.get(first.name, first.annotation)
    if isinstance(annotation, str):
        is_job = annotation.rpartition(".")[2] == "Job"
    else:
        is_job = isinstance(annotation, type) and issubclass(annotation, Job)
    return f"its parameter {first.name} is annotated Job" if is_job else None


def _select(consumers: list[Consumer], queues: Sequence[str], spec: str) -> list[Consumer]:
    """The consumers serving any of ``queues``, each narrowed to those it
    serves (``--queues``). A queue keeps the handler the application gave it:
    a name no consumer serves is refused, never handed to another consumer."""
    served = list(dict.fromkeys(q for c in consumers for q in c.queues))
    unknown = [q for q in dict.fromkeys(queues) if q not in served]
    if unknown:
        raise ConfigurationError(
            f"--queues: no consumer of {spec} serves {', '.join(map(repr, unknown))}; "
            f"it serves: {', '.join(served)}"
        )
    selected = []
    for consumer in consumers:
        keep = [q for q in consumer.queues if q in queues]
        if len(keep) == len(consumer.queues):
            selected.append(consumer)
        elif keep:
            # replace() names a consumer after its new queues unless told a
            # name: keep the one the application chose, if it chose one.
            named = consumer.name != f"consumer[{','.join(consumer.queues)}]"
            selected.append(
                consumer.replace(queues=keep, **({"name": consumer.name} if named else {}))
            )
    return selected


def run_worker(
    consumers: Sequence[Consumer],
    *,
    stop_timeout: float,
    install_signals: bool = True,
    restore_signals: bool = True,
    ready: Callable[[], None] | None = None,
) -> int:
    """Run ``consumers`` until SIGTERM/SIGINT; return the exit status. With
    ``restore_signals`` false the worker's handlers stay installed after it
    returns (the ``taskmaster worker`` command, which exits right after: a
    second signal landing then must not kill a process that stopped cleanly,
    turning its exit status into -15)."""
    stop_requested = threading.Event()
    signals_seen = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:  # a normal stop: INFO, so a healthy worker is silent at WARNING
            logger.info("%s received: stopping (up to %gs for running jobs)", name, stop_timeout)
            stop_requested.set()
        else:
            logger.warning("%s received again: not waiting for running jobs", name)
            for consumer in consumers:
                consumer.hurry()

    previous: dict[signal.Signals, Any] = {}
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        brokers = {id(c.broker): c.broker for c in consumers}
        for broker in brokers.values():
            broker.open()
            # One cheap look at the storage first: a table that was never
            # migrated (or a role without grants) stops the worker here with
            # the broker's error, instead of a claim loop retrying forever.
            broker.jobs(limit=1)
            if isinstance(broker, PausesQueues):
                broker.paused()  # the claim reads this too (a table older than the code)
        for consumer in consumers:
            consumer.start()
        logger.info(
            "worker running %d consumer(s): %s",
            len(consumers),
            ", ".join(c.name for c in consumers),
        )
        if ready is not None:
            ready()
        dead: list[Consumer] = []
        while not stop_requested.wait(0.5) and not dead:
            dead = [c for c in consumers if not c.healthy]
        if dead:
            logger.error(
                "consumer(s) died: %s; stopping the worker", ", ".join(c.name for c in dead)
            )
        results: list[bool] = []
        stoppers = [
            threading.Thread(target=lambda c=c: results.append(c.stop(stop_timeout)))
            for c in consumers
        ]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            while thread.is_alive():
                thread.join(0.1)  # short slices, so a second signal is handled promptly
        clean = all(results)
        for consumer in consumers:
            # A consumer that died stopped itself, on its own timeout: do not
            # close its broker under a stop still flushing its outcomes.
            if not consumer.wait_stopped(0):
                consumer.hurry()
                consumer.wait_stopped(_FLUSH_GRACE)
        died = [c.name for c in consumers if not c.healthy]
        if died:
            logger.error("worker stopped because consumer(s) died: %s", ", ".join(died))
            return EXIT_CONSUMER_DIED
        if clean:
            logger.info("worker stopped cleanly")
        else:
            logger.warning(
                "worker stopped with handlers still running at the stop timeout (sync ones "
                "abandoned: retried after their lease expires; async ones cancelled: retried now)"
            )
        return 0 if clean else EXIT_HANDLERS_ABANDONED
    finally:
        for restored, handler in previous.items() if restore_signals else ():
            signal.signal(restored, handler)
        for broker in {id(c.broker): c.broker for c in consumers}.values():
            broker.close()
        sys.stdout.flush()
