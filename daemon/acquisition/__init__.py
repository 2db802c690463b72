"""Acquisition: the devices of every driver and their hot-plug, sessions
(who holds which device, the exposure state machine, the images each
exposure leaves on disk), the exposure pipeline from a driver frame to a
stored image, and the events the room announces (events.py)."""
