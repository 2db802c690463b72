"""A sensor interface that speaks serial protocol v1 on the far end of a pty.

The driver opens the pty slave like any serial port. The emulator owns the
master in its own thread: it decodes requests with the driver's own
``FrameDecoder``, answers them, and streams frames. Replies go out before
queued frame data, but never in the middle of a message, as real firmware
answers between chunks.

Linux facts this relies on (checked, pyserial 3.5): closing the master makes
``/dev/pts/N`` vanish at once and the slave's reads raise SerialException
("readiness to read but returned no data"), ``in_waiting`` raises EIO. A new
pty may get another number, so the emulator publishes a stable symlink
(like udev's /dev/serial/by-id) and re-points it on replug. The emulator
keeps its own slave fd open so the master never reads EIO while the driver
has the port closed.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import os
import select
import termios
import threading
import time
import tty
import zlib
from typing import Callable, Optional, Union

import numpy as np

from sensord.drivers import serial_frames as f
from sensord.drivers import serial_messages as sm
from sensord.drivers import serial_wire as w

State = sm.DeviceState
LOW_BATTERY_PERCENT = 10   # the emulated firmware's own threshold


class SensorEmulator:
    def __init__(self, link_dir: str, *, width: int = 64, height: int = 48, chunk_size: int = 1024,
                 serial: str = "EMU-0001", sensor_serial: str = "SN-4242", battery: Optional[int] = 80,
                 supports_binning: bool = True, seed: int = 1234):
        self.path = os.path.join(link_dir, "ttyEMU0")
        self.url = f"serial://{self.path}"
        self.width, self.height, self.chunk_size = width, height, chunk_size
        self.serial, self.sensor_serial = serial, sensor_serial
        self.battery, self.supports_binning = battery, supports_binning
        self.seed = seed
        self.sensor_present = True
        self.armed = self.binning = False
        self.initializing = False      # warming up or recalibrating: ARM is refused with BUSY
        self.fault = False             # the sensor reports a fault: STATUS ERROR
        self.echo_tag_on_status = False   # True: the STATUS after an ACK carries the request's tag
        self.ack_arm_but_stay_idle = False   # True: a non-conforming device (ACK OK, still IDLE)
        self.answering = True          # False: a pulled RS-232 cable, the port stays
        self.received: list = []       # every request decoded, for assertions
        self._lock = threading.RLock()
        self._replies: collections.deque = collections.deque()
        self._bulk: collections.deque[Union[bytes, Callable]] = collections.deque()
        self._out = memoryview(b"")    # the message being written right now
        self._decoder = w.FrameDecoder()
        self._master = self._slave = None
        self._frame_id = 0
        self._reading = False
        self._last_write = 0.0
        self._drop_bytes = 0
        self._corrupt: Optional[bool] = None
        self._lose: Optional[int] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensor-emulator", daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "SensorEmulator":
        self._open_pty()
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        tmp = self.path + ".new"
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)   # atomic: the driver never sees a half-made link
        self._master, self._slave = master, slave
        self._decoder = w.FrameDecoder()

    def _close_pty(self) -> None:
        if self._master is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = None
        self._replies.clear()
        self._bulk.clear()
        self._out = memoryview(b"")

    # ------------------------------------------------------------ test controls

    def expose(self, *, interleave: bytes = b"", pixels: Optional[np.ndarray] = None) -> np.ndarray:
        """Send one exposure; returns the pixels sent. ``interleave`` goes between chunks;
        ``pixels`` replaces the generated image (to send values a sensor must not).

        Like the firmware it stands for, the sensor captures one exposure per
        arm, and none while its battery is low.
        """
        with self._lock:
            if not self.armed or self._battery_low():
                raise RuntimeError("emulated sensor is not armed, or its battery is low")
            messages, pixels = self._frame_messages(pixels)
            self._bulk.append(lambda: self._set_state(reading=True))
            for i, msg in enumerate(messages):
                self._bulk.append(msg)
                if interleave and 0 < i < len(messages) - 1:
                    self._bulk.append(interleave)
            self._bulk.append(self._end_readout)
        return pixels

    def pull_cable_mid_frame(self, *, vanish: bool = True) -> np.ndarray:
        """Start an exposure, stop halfway through the chunks and pull the cable.

        ``vanish=True`` closes the master (a USB adapter unplugged: the port
        path disappears); ``vanish=False`` just goes silent (RS-232 cable
        pulled from a fixed port: the port stays and nothing arrives).
        """
        with self._lock:
            messages, pixels = self._frame_messages()
            half = 1 + (len(messages) - 2) // 2
            self.armed = False      # the readout runs to its end, into the void
            self._bulk.append(lambda: self._set_state(reading=True))
            self._bulk.extend(messages[:half])
            self._bulk.append(lambda: self._pull_when_read(vanish))
        return pixels

    def abort_readout(self, *, after_chunks: Optional[int] = 2,
                      text: str = "sensor lost sync") -> np.ndarray:
        """Start an exposure and give it up after ``after_chunks`` CHUNKs (None:
        before its EXPOSURE): ERROR READOUT_ABORTED (no FRAME_END), then STATUS
        IDLE. The arm is spent."""
        with self._lock:
            if not self.armed:
                raise RuntimeError("emulated sensor is not armed")
            messages, pixels = self._frame_messages()
            self._bulk.append(lambda: self._set_state(reading=True))
            self._bulk.extend(messages[:0 if after_chunks is None else 1 + after_chunks])
            self._bulk.append(w.encode_error(sm.ErrorCode.READOUT_ABORTED, 0, text))
            self._bulk.append(self._end_readout)
        return pixels

    @property
    def last_frame_id(self) -> int:
        return self._frame_id

    def begin_warm_up(self) -> None:
        """Enter INITIALIZING (power-up warm-up or a recalibration): the arm is
        dropped and ARM is refused with BUSY until ``end_warm_up``."""
        with self._lock:
            self.initializing, self.armed = True, False
            self._push_status()

    def end_warm_up(self) -> None:
        """Warm-up done: IDLE (unarmed), announced by an unsolicited STATUS."""
        with self._lock:
            self.initializing = False
            self._push_status()

    def set_fault(self, text: str = "") -> None:
        """The sensor fails: STATUS ERROR (after ERROR SENSOR_FAULT if ``text``); the arm is dropped."""
        with self._lock:
            self.fault, self.armed = True, False
            if text:
                self._replies.append(w.encode_error(sm.ErrorCode.SENSOR_FAULT, 0, text))
            self._push_status()

    def clear_fault(self, *, recalibrate: bool = False) -> None:
        """The fault clears: IDLE, or INITIALIZING first with ``recalibrate`` (then ``end_warm_up``)."""
        with self._lock:
            self.fault, self.initializing = False, recalibrate
            self._push_status()

    def reboot(self) -> None:
        """The interface restarts on a port that stays (RS-232): INITIALIZING,
        unarmed, frame ids counted afresh; ``end_warm_up`` makes it IDLE."""
        with self._lock:
            self._reading = False
            self._bulk.clear()
            self._frame_id = 0
            self.fault = False
            self.begin_warm_up()

    def pull_cable(self, *, vanish: bool = True) -> None:
        with self._lock:
            self._pull(vanish)

    def replug(self) -> None:
        with self._lock:
            if self._master is None:
                self.armed = False   # a USB device powers up disarmed
                self._frame_id = 0   # and counts its frames afresh
                self._open_pty()
            self.answering = True

    def inject_garbage(self, data: bytes) -> None:
        with self._lock:
            self._bulk.append(bytes(data))

    def drop_bytes_in_next_frame(self, n: int) -> None:
        """Lose ``n`` bytes from the middle of the middle chunk of the next frame."""
        self._drop_bytes = n

    def corrupt_next_chunk(self, *, recompute_crc: bool = False) -> None:
        """Flip one bit in a chunk of the next frame. With ``recompute_crc`` the
        message CRC is made to fit (a memory error before framing), so only the
        whole-frame CRC can catch it."""
        self._corrupt = recompute_crc

    def lose_in_next_frame(self, which: str) -> None:
        """Lose the next frame's ``"exposure"`` or ``"frame_end"`` message."""
        self._lose = {"exposure": 0, "frame_end": -1}[which]

    def report_error(self, code: int, text: str) -> None:
        with self._lock:
            self._replies.append(w.encode_error(code, 0, text))

    def set_no_sensor(self) -> None:
        with self._lock:
            self.sensor_present, self.armed = False, False
            self._push_status()

    def set_sensor(self, *, warm_up: bool = False) -> None:
        """Attach the sensor: IDLE, or INITIALIZING first with ``warm_up`` (then ``end_warm_up``)."""
        with self._lock:
            self.sensor_present, self.initializing = True, warm_up
            self._push_status()

    def set_battery(self, percent: Optional[int]) -> None:
        with self._lock:
            self.battery = percent
            self._push_status()

    def set_answering(self, answering: bool) -> None:
        """Stop (or resume) answering requests, without closing anything."""
        with self._lock:
            self.answering = answering

    def requests(self, kind) -> list:
        with self._lock:
            return [m for m in self.received if isinstance(m, kind)]

    # ------------------------------------------------------------ device side

    def pixels_for(self, frame_id: int, shape: tuple[int, int]) -> np.ndarray:
        rng = np.random.default_rng(self.seed + frame_id)
        return rng.integers(0, 4096, size=shape, dtype=np.uint16)

    def _frame_messages(self, pixels: Optional[np.ndarray] = None) -> tuple[list[bytes], np.ndarray]:
        self._frame_id = (self._frame_id + 1) & 0xFFFF
        frame_id, binned = self._frame_id, self.binning
        shape = (self.height // 2, self.width // 2) if binned else (self.height, self.width)
        pixels = self.pixels_for(frame_id, shape) if pixels is None else np.asarray(pixels, np.uint16)
        messages = f.encode_image(frame_id, pixels, binned=binned, chunk_size=self.chunk_size)
        middle = len(messages) // 2   # a CHUNK: index 0 is EXPOSURE, -1 is FRAME_END
        assert len(messages) > 3, "frames need 2+ chunks for the damage controls"
        if self._drop_bytes:
            m, n = messages[middle], self._drop_bytes
            cut = len(m) // 2
            messages[middle] = m[:cut] + m[cut + n:]
            self._drop_bytes = 0
        if self._lose is not None:
            del messages[self._lose]
            self._lose = None
        if self._corrupt is not None:
            m = bytearray(messages[middle])
            m[len(m) // 2] ^= 0x10
            if self._corrupt:
                body = bytes(m[2:-4])
                m[-4:] = zlib.crc32(body).to_bytes(4, "little")
            messages[middle] = bytes(m)
            self._corrupt = None
        return messages, pixels

    def _pull_when_read(self, vanish: bool) -> bool:
        # A hangup discards what the driver has not read yet; wait until the
        # first half really reached it, so "mid-frame" is what the test gets.
        # Bytes reach the slave's queue asynchronously, hence the quiet time too.
        pending = fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0")
        if int.from_bytes(pending, "little") or time.monotonic() - self._last_write < 0.05:
            return False
        self._pull(vanish)
        return True

    def _pull(self, vanish: bool) -> None:
        self._reading = False
        self._bulk.clear()
        self._out = memoryview(b"")
        if vanish:
            self._close_pty()
        else:
            self.answering = False

    def _battery_low(self) -> bool:
        return self.battery is not None and self.battery < LOW_BATTERY_PERCENT

    def _end_readout(self) -> None:
        self.armed = False
        self._set_state(reading=False)

    def _state(self) -> int:
        if not self.sensor_present:
            return State.NO_SENSOR
        if self.fault:
            return State.ERROR
        if self.initializing:
            return State.INITIALIZING
        if self._reading:
            return State.READING
        return State.ARMED if self.armed else State.IDLE

    def _arm_refusal(self, binning: bool) -> int:
        E = sm.ErrorCode
        if not self.sensor_present:
            return E.NO_SENSOR
        if self.fault:
            return E.SENSOR_FAULT
        if self.initializing or self._reading:
            return E.BUSY
        if binning and not self.supports_binning:
            return E.BINNING_UNSUPPORTED
        return E.OK

    def _status(self, tag: int = 0) -> bytes:
        return w.encode_status(self._state(), self.battery, self._battery_low(), tag=tag)

    def _push_status(self) -> None:
        if self._master is not None and self.answering:
            self._replies.append(self._status())

    def _set_state(self, *, reading: bool) -> None:
        self._reading = reading
        self._push_status()

    def _ident(self, tag: int) -> bytes:
        sensor = None
        if self.sensor_present:
            sensor = sm.SensorDesc("Emu 2", self.sensor_serial, "Emulated", "Supreme", 2,
                                  self.width, self.height, 12, self.supports_binning, 18500, "3.1.4")
        return w.encode_ident("Emu Serial Interface", self.serial, "1.7",
                              battery_powered=self.battery is not None, sensor=sensor, tag=tag)

    def _answer(self, msg) -> bytes:
        T, E = sm.T, sm.ErrorCode
        if isinstance(msg, sm.Identify):
            return self._ident(msg.tag)
        if isinstance(msg, sm.GetStatus):
            return self._status(msg.tag)
        # After ACK OK comes a STATUS with the new state, tag 00 as the
        # protocol says (or the request's tag with echo_tag_on_status).
        status_tag = msg.tag if self.echo_tag_on_status else 0
        if isinstance(msg, sm.Arm):
            refusal = self._arm_refusal(msg.binning)
            if refusal:
                return w.encode_ack(T.ARM, refusal, tag=msg.tag)
            self.armed, self.binning = not self.ack_arm_but_stay_idle, msg.binning
            return w.encode_ack(T.ARM, E.OK, tag=msg.tag) + self._status(status_tag)
        if isinstance(msg, sm.Disarm):
            self.armed = False
            return w.encode_ack(T.DISARM, E.OK, tag=msg.tag) + self._status(status_tag)
        return w.encode_error(E.BAD_REQUEST, msg.TYPE, "not a host request", tag=msg.tag)

    # ------------------------------------------------------------ pty thread

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._master is not None and not self._out:
                    self._next_output()   # may pull the cable: read the fd after it
                master = self._master
                want_write = bool(self._out)
            if master is None:
                self._stop.wait(0.01)
                continue
            try:
                readable, writable, _ = select.select([master], [master] if want_write else [], [], 0.02)
                with self._lock:
                    if master != self._master:
                        continue   # pulled while we waited
                    if readable:
                        self._receive(os.read(master, 65536))
                    if writable and self._out:
                        n = os.write(master, self._out)
                        self._out = self._out[n:]
                        self._last_write = time.monotonic()
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno not in (errno.EIO, errno.EBADF):
                    raise

    def _next_output(self) -> None:
        # Replies first; frame data and actions in order; one whole message at a time.
        while not self._out:
            if self._replies:
                self._out = memoryview(self._replies.popleft())
            elif self._bulk:
                item = self._bulk.popleft()
                if callable(item):
                    if item() is False:          # not yet: try again on the next turn
                        self._bulk.appendleft(item)
                        return
                    if self._master is None:
                        return
                else:
                    self._out = memoryview(item)
            else:
                return
            if not self.answering:
                self._out = memoryview(b"")
                if not self._replies and not self._bulk:
                    return

    def _receive(self, data: bytes) -> None:
        if not self.answering:
            return   # the bytes went into a cable that leads nowhere
        for msg in self._decoder.feed(data):
            self.received.append(msg)
            self._replies.append(self._answer(msg))
