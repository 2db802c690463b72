"""Serial wire format v1 on plain bytes: encoders, streaming decoder, frame assembler."""
import random
import struct
import zlib

import numpy as np
import pytest

from sensord.drivers import serial_frames as f
from sensord.drivers import serial_messages as sm
from sensord.drivers import serial_wire as w

SENSOR = sm.SensorDesc("Emu 2", "SN-1", "Emulated", "Supreme", 2, 1200, 854, 12, True, 18500, "3.1.4")

EVERY_MESSAGE = [
    sm.Identify(tag=1),
    sm.GetStatus(tag=2),
    sm.Arm(True, tag=3),
    sm.Arm(False, tag=4),
    sm.Disarm(tag=5),
    sm.Ident("Emu Serial Interface", "EMU-1", "1.7", True, SENSOR, tag=6),
    sm.Ident("Emu Serial Interface", "EMU-1", "1.7", False, None, tag=7),
    sm.Ident("Ünïcode – model", "S/N 9", "", True, SENSOR, tag=0),
    sm.Status(sm.DeviceState.ARMED, 80, False, tag=8),
    sm.Status(sm.DeviceState.IDLE, 5, True),
    sm.Status(sm.DeviceState.NO_SENSOR, None, False),
    sm.Ack(sm.T.ARM, sm.ErrorCode.OK, tag=9),
    sm.Ack(sm.T.DISARM, sm.ErrorCode.BUSY, tag=10),
    sm.ExposureStart(7, 1200, 854, False, 501, 1200 * 854 * 2),
    sm.ExposureStart(8, 600, 427, True, 126, 600 * 427 * 2),
    sm.Chunk(7, 3, 3 * 4096, bytes(range(256)) * 16),
    sm.Chunk(7, 0, 0, b"\x01"),
    sm.FrameEnd(7, 501, 1200 * 854 * 2, 0xDEADBEEF),
    sm.ErrorMsg(sm.ErrorCode.SENSOR_FAULT, 0, "sensor too hot"),
    sm.ErrorMsg(sm.ErrorCode.BAD_REQUEST, sm.T.IDENT, "", tag=11),
]


def decode_all(data: bytes) -> tuple[list, w.FrameDecoder]:
    d = w.FrameDecoder()
    return d.feed(data), d


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    out, d = decode_all(w.encode(msg))
    assert out == [msg]
    assert d.pending == 0 and d.garbage_bytes == 0


def test_encode_builders_match_message_objects():
    assert w.encode_identify(tag=1) == w.encode(sm.Identify(tag=1))
    assert w.encode_get_status(tag=2) == w.encode(sm.GetStatus(tag=2))
    assert w.encode_arm(True, tag=3) == w.encode(sm.Arm(True, tag=3))
    assert w.encode_disarm(tag=4) == w.encode(sm.Disarm(tag=4))
    assert w.encode_ident("M", "S", "F", battery_powered=True, sensor=SENSOR) == \
        w.encode(sm.Ident("M", "S", "F", True, SENSOR))
    assert w.encode_status(3, 50, tag=5) == w.encode(sm.Status(3, 50, False, tag=5))
    assert w.encode_ack(sm.T.ARM, 0, tag=6) == w.encode(sm.Ack(sm.T.ARM, 0, tag=6))
    assert w.encode_exposure(1, 4, 2, binned=False, chunk_count=1) == \
        w.encode(sm.ExposureStart(1, 4, 2, False, 1, 16))
    assert w.encode_chunk(1, 0, 0, b"ab") == w.encode(sm.Chunk(1, 0, 0, b"ab"))
    assert w.encode_frame_end(1, 1, 16, 42) == w.encode(sm.FrameEnd(1, 1, 16, 42))
    assert w.encode_error(6, 0, "x") == w.encode(sm.ErrorMsg(6, 0, "x"))


def test_layout_is_as_documented():
    raw = w.encode_ack(sm.T.ARM, 0, tag=0x21)
    assert raw[:2] == b"\xA5\x5A" and raw[2] == 1 and raw[3] == 0x83 and raw[4] == 0x21
    assert struct.unpack_from("<H", raw, 5)[0] == 2
    assert struct.unpack_from("<H", raw, 7)[0] == w._header_crc(raw[2:7])
    assert raw[9:11] == bytes([0x03, 0x00])
    assert struct.unpack_from("<I", raw, 11)[0] == zlib.crc32(raw[2:11])
    assert len(raw) == 15


def test_byte_by_byte_feeding():
    stream = b"".join(w.encode(m) for m in EVERY_MESSAGE)
    d, out = w.FrameDecoder(), []
    for i in range(len(stream)):
        out += d.feed(stream[i:i + 1])
    assert out == EVERY_MESSAGE and d.garbage_bytes == 0


def test_garbage_before_and_between_messages():
    a, b = w.encode_status(2, 50), w.encode_ack(sm.T.ARM, 0, tag=1)
    # Garbage that contains sync bytes and a whole fake header with a good header CRC.
    fake_head = struct.pack("<BBBH", 1, 0x85, 0, 4000)
    fake = w.SYNC + fake_head + struct.pack("<H", w._header_crc(fake_head))
    junk = b"\x00\xff\xA5\xA5\x5A\x01" + fake + b"noise"
    out, d = decode_all(junk + a + junk + b + b"\xA5")
    # The fake header claims 4000 bytes; the good messages behind it wait until
    # that many arrive or the line goes quiet.
    out += d.drop_stalled()
    assert out == [sm.Status(2, 50), sm.Ack(sm.T.ARM, 0, tag=1)]
    assert d.garbage_bytes == 2 * len(junk) + 1


def test_flipped_bit_drops_only_that_message():
    msgs = [sm.Chunk(1, i, i * 100, bytes([i]) * 100) for i in range(5)]
    raw = [bytearray(w.encode(m)) for m in msgs]
    raw[2][40] ^= 0x04
    out, d = decode_all(b"".join(raw))
    assert out == msgs[:2] + msgs[3:]
    assert d.crc_errors == 1


def test_flipped_bit_in_header():
    raw = bytearray(w.encode_status(2, 50))
    raw[5] ^= 0x01   # length field
    out, d = decode_all(bytes(raw) + w.encode_status(3, 60))
    assert out == [sm.Status(3, 60)] and d.header_errors == 1


def test_lost_bytes_in_the_middle_of_a_chunk():
    msgs = [sm.Chunk(1, i, i * 1000, bytes([i]) * 1000) for i in range(4)]
    raw = [w.encode(m) for m in msgs]
    raw[1] = raw[1][:500] + raw[1][520:]
    out, d = decode_all(b"".join(raw))
    # The damaged chunk's length reaches into the next one; its CRC fails and
    # the scan resumes one byte on, finding chunk 2 intact.
    assert out == [msgs[0], msgs[2], msgs[3]]
    assert d.crc_errors == 1


def test_truncated_stream_waits_then_gives_up_when_told():
    full = w.encode_chunk(1, 0, 0, b"x" * 300)
    out, d = decode_all(full[:200])
    assert out == [] and d.pending == 200
    assert d.feed(full[200:]) == [sm.Chunk(1, 0, 0, b"x" * 300)]
    out, d = decode_all(full[:200])
    assert d.drop_stalled() == [] and d.pending == 0 and d.truncated == 1


def test_truncated_message_followed_by_good_one():
    cut = w.encode_chunk(1, 0, 0, b"x" * 3000)[:100]
    good = w.encode_ack(sm.T.DISARM, 0, tag=9)
    out, d = decode_all(cut + good)
    assert out == []                       # still waiting for the 3000 bytes
    assert d.drop_stalled() == [sm.Ack(sm.T.DISARM, 0, tag=9)]


def test_oversize_length_field_is_rejected_at_once():
    head = struct.pack("<BBBH", 1, 0x85, 0, sm.MAX_PAYLOAD + 1)
    bad = w.SYNC + head + struct.pack("<H", w._header_crc(head))
    out, d = decode_all(bad + w.encode_status(2, 1))
    assert out == [sm.Status(2, 1)] and d.oversize == 1 and d.pending == 0


def test_encoder_refuses_oversize_payload():
    with pytest.raises(ValueError):
        w.encode_frame(sm.T.CHUNK, b"x" * (sm.MAX_PAYLOAD + 1))


def test_wrong_version_is_skipped():
    head = struct.pack("<BBBH", 2, sm.T.STATUS, 0, 3)
    v2 = w.SYNC + head + struct.pack("<H", w._header_crc(head)) + b"\x02\x32\x00"
    v2 += struct.pack("<I", zlib.crc32(v2[2:]))
    out, d = decode_all(v2 + w.encode_status(2, 1))
    assert out == [sm.Status(2, 1)] and d.header_errors == 1


@pytest.mark.parametrize("mtype,payload", [
    (sm.T.STATUS, b"\x02"),                                   # too short
    (sm.T.STATUS, b"\x02\x65\x00"),                           # battery 101 %
    (sm.T.ARM, b""),                                          # flag missing
    (sm.T.IDENT, b"\x01\x00\x05abc"),                         # string runs out
    (sm.T.IDENT, b"\x01\x00\x02\xff\xfe\x00\x00"),            # not UTF-8
    (sm.T.EXPOSURE, struct.pack("<HHHBHI", 1, 10, 10, 0, 1, 999)),   # size mismatch
    (sm.T.EXPOSURE, struct.pack("<HHHBHI", 1, 0, 10, 0, 1, 0)),      # zero width
    (sm.T.CHUNK, struct.pack("<HHI", 1, 0, 0)),               # no data
    (0x42, b""),                                             # unknown type
])
def test_malformed_payload_with_good_crc_is_counted_not_raised(mtype, payload):
    out, d = decode_all(w.encode_frame(mtype, payload) + w.encode_identify())
    assert out == [sm.Identify()] and d.bad_payloads == 1


def test_trailing_payload_bytes_are_ignored_for_forward_compatibility():
    out, _ = decode_all(w.encode_frame(sm.T.STATUS, b"\x03\x32\x00extra"))
    assert out == [sm.Status(3, 50)]


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    kind = rng.randrange(5)
    b = bytearray(raw)
    i = rng.randrange(len(b))
    if kind == 0:
        b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del b[i:i + rng.randint(1, 20)]
    elif kind == 2:
        j = rng.randrange(1, len(b))                          # inside, not before it
        b[j:j] = rng.randbytes(rng.randint(1, 20))
    elif kind == 3:
        del b[rng.randrange(1, len(b)):]                      # truncated
    else:
        b[i] ^= 0xFF
        b[rng.randrange(len(b))] ^= 0x80
    return bytes(b)


def test_fuzz_never_raises_and_yields_exactly_the_intact_messages():
    rng = random.Random(20240611)
    pool = EVERY_MESSAGE[:13] + [sm.Chunk(3, i, i * 64, rng.randbytes(rng.randint(1, 300)))
                                 for i in range(30)]
    stream, expected, mutated = bytearray(), [], 0
    for _ in range(4000):
        msg = rng.choice(pool)
        raw = w.encode(msg)
        if rng.random() < 0.6:
            new = _mutate(rng, raw)
            # Random insertions can rebuild a sync in front of untouched bytes:
            # a message is intact exactly when its whole encoding is still there.
            if raw not in new:
                mutated += 1
                msg = None
            raw = new
        if rng.random() < 0.2:
            stream += rng.randbytes(rng.randint(1, 40)).replace(w.SYNC, b"")
        stream += raw
        if msg is not None:
            expected.append(msg)
    assert mutated > 2000
    d, out, pos = w.FrameDecoder(), [], 0
    while pos < len(stream):                     # feed in random-sized reads
        n = rng.randint(1, 700)
        out += d.feed(bytes(stream[pos:pos + n]))
        pos += n
    out += d.drop_stalled()
    # No damaged message gets through, and every undamaged one is found again.
    assert out == expected
    assert d.crc_errors + d.header_errors + d.oversize > 1000


def test_random_noise_never_raises():
    rng = random.Random(7)
    d = w.FrameDecoder()
    for _ in range(200):
        d.feed(rng.randbytes(rng.randint(0, 2000)) + w.SYNC)
    d.drop_stalled()
    assert d.messages == 0 and d.pending == 0


# ---------------------------------------------------------------- assembler

def _frame(width=64, height=48, seed=1, chunk_size=1000):
    pixels = np.random.default_rng(seed).integers(0, 4096, (height, width), dtype=np.uint16)
    msgs, _ = decode_all(b"".join(f.encode_image(5, pixels, chunk_size=chunk_size)))
    return pixels, msgs[0], msgs[1:-1], msgs[-1]


def _assemble(start, chunks, end):
    a = f.FrameAssembler(start)
    for c in chunks:
        a.add(c)
    return a.finish(end)


def test_assembler_returns_the_pixels():
    pixels, start, chunks, end = _frame()
    out = _assemble(start, chunks, end)
    assert out.dtype == np.uint16 and out.shape == (48, 64)
    assert np.array_equal(out, pixels)


def test_assembler_realistic_frame():
    pixels, start, chunks, end = _frame(1200, 854, chunk_size=sm.MAX_CHUNK_DATA)
    assert len(chunks) == 501
    assert np.array_equal(_assemble(start, chunks, end), pixels)


@pytest.mark.parametrize("damage,reason", [
    (lambda c: c[:3] + c[4:], "missing chunk 3"),
    (lambda c: c[:3] + [c[2]] + c[3:], "duplicate chunk 2"),
    (lambda c: c[:3] + [c[4], c[3]] + c[5:], "missing chunk 3"),
    (lambda c: c[:-1], "got 6 of 7 chunks"),
    (lambda c: c[:2] + [sm.Chunk(5, 2, 2001, c[2].data)] + c[3:], "offset 2001"),
    (lambda c: c[:2] + [sm.Chunk(9, 2, 2000, c[2].data)] + c[3:], "chunk of frame 9"),
    (lambda c: c + [sm.Chunk(5, 7, 6144, b"xx")], "beyond the announced"),
    (lambda c: c[:2] + [sm.Chunk(5, 2, 2000, bytes(len(c[2].data)))] + c[3:], "frame CRC mismatch"),
])
def test_assembler_rejects_damaged_frames(damage, reason):
    _, start, chunks, end = _frame()
    with pytest.raises(f.FrameError, match=reason):
        _assemble(start, damage(chunks), end)


def test_assembler_rejects_wrong_frame_end():
    _, start, chunks, end = _frame()
    with pytest.raises(f.FrameError, match="CRC"):
        _assemble(start, chunks, sm.FrameEnd(5, end.chunk_count, end.total_bytes, end.crc32 ^ 1))
    with pytest.raises(f.FrameError, match="frame end of frame 6"):
        _assemble(start, chunks, sm.FrameEnd(6, end.chunk_count, end.total_bytes, end.crc32))


def test_assembler_rejects_overrun():
    _, start, chunks, end = _frame()
    last = chunks[-1]
    with pytest.raises(f.FrameError, match="overruns"):
        _assemble(start, chunks[:-1] + [sm.Chunk(5, last.seq, last.offset, last.data + b"zz")], end)


def test_assembler_takes_chunks_that_split_pixels():
    pixels, start, chunks, end = _frame(chunk_size=1001)
    assert any(len(c.data) % 2 for c in chunks)
    assert np.array_equal(_assemble(start, chunks, end), pixels)


@pytest.mark.parametrize("bits,value,ok", [(12, 4095, True), (12, 4096, False), (12, 0xFFFF, False),
                                           (16, 0xFFFF, True), (1, 1, True), (1, 2, False)])
def test_assembler_rejects_samples_beyond_the_sensors_bits(bits, value, ok):
    pixels = np.zeros((48, 64), np.uint16)
    pixels[3, 9] = value
    msgs, _ = decode_all(b"".join(f.encode_image(5, pixels, chunk_size=1000)))
    a = f.FrameAssembler(msgs[0], bits=bits)
    for c in msgs[1:-1]:
        a.add(c)
    if ok:
        assert np.array_equal(a.finish(msgs[-1]), pixels)
    else:
        with pytest.raises(f.FrameError, match=rf"1 pixel value\(s\) at or above 2\^{bits} = {1 << bits}, "
                                               rf"first {value} at row 3, column 9"):
            a.finish(msgs[-1])


def test_chunk_data_and_error_text_run_to_the_end_of_the_payload():
    # No field can be appended to CHUNK or ERROR: whatever follows is data / text.
    out, _ = decode_all(w.encode_frame(sm.T.CHUNK, struct.pack("<HHI", 1, 2, 4) + b"\x01\x02\x03")
                        + w.encode_frame(sm.T.ERROR, struct.pack("<HB", 7, 0) + b"aborted\x00more"))
    assert out == [sm.Chunk(1, 2, 4, b"\x01\x02\x03"), sm.ErrorMsg(7, 0, "aborted\x00more")]
