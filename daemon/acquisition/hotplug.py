"""Serial ports that appear get a driver: polled on the scheduler.

A port that vanishes is the driver's business (it reports NoHardware, then
``removed`` after a grace period, and recovers when the port returns), so
this only ever adds.
"""
from __future__ import annotations

import logging

from sensord.drivers.serial_port import list_ports

log = logging.getLogger("sensord.hotplug")


class SerialPortWatcher:
    def __init__(self, registry, pattern: str):
        self.registry = registry
        self.pattern = pattern

    def poll(self) -> list[str]:
        known = {driver.url for driver in self.registry.drivers}
        added = []
        for path in list_ports(self.pattern):
            url = f"serial://{path}"
            if url not in known:
                log.info("serial port %s appeared", path)
                self.registry.add_driver(url)
                added.append(url)
        return added
