"""The sensord service: the vendor's DSIO APIs over a sensor, a store and an outbox.

Rooms, each a subpackage; imports flow down this list and never sideways::

    host/         the process: CLI, server and TLS front, shutdown, reload,
                  sd_notify, health, logging
    app.py        the Flask app factory; service.py composes the services
    api/          one blueprint per resource, auth, errors, bodies, SSE,
                  the status page's static files
    acquisition/  devices, hot-plug, sessions, the exposure pipeline
    forward/      rules, the outbox, delivery, platform adapters
    store/        the expiring resource store and the pixel cache
    live/         the event hub, the status feed and its snapshot
    dsio/         the wire contract's types: ImageInfo, AcquisitionInfo,
                  filter parameters, timestamps, state names
    (top level)   settings, durable writes, the scheduler, the error type
                  that carries its HTTP status, typed signals, the metrics'
                  definitions, the health checks and the allocator's tuning
                  (malloc.py): used by all

Below them, ``sensord.drivers`` talks to sensors and ``sensord.filters`` is
pure array code. ``tests/test_layout.py`` keeps the order.
"""
