"""Acquisition: the devices of every driver and their hot-plug, sessions
(who holds which device, the images each exposure leaves on disk), the
exposure state machine and its arming rule (arming.py), one exposure from a
driver frame to the announced image (exposure.py), the pixel pipeline it
runs (pipeline.py), and the events the room announces (events.py)."""
