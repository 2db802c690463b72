"""The state enums: their values are the Modality API's names, and they reach
the wire as exactly the strings they replaced."""
from __future__ import annotations

import json

import pytest

from sensord.daemon.dsio.states import AcquisitionState, DeviceStatus
from sensord.drivers.base import FAULTS, SensorState, StateEvent
from tests.support.modality import API, create_session, device_of, expose, subscribe_status

# From specs/dsio-modality-v1.yaml, components.schemas, in the spec's order:
# AcquisitionStatus.state.enum and DeviceStatus.enum.
SPEC_ACQUISITION_STATES = ["Error", "LowBattery", "InsufficientStorage", "NoHardware", "NoSensor",
                           "Initializing", "NoAcquisitionInfo", "Ready", "Reading", "Processing",
                           "Storing", "NewImage"]
SPEC_DEVICE_STATUSES = ["Available", "InUse", "Unavailable", "Error"]


def test_acquisition_states_are_the_specs():
    assert sorted(s.value for s in AcquisitionState) == sorted(SPEC_ACQUISITION_STATES)


def test_device_statuses_are_the_specs():
    assert sorted(s.value for s in DeviceStatus) == sorted(SPEC_DEVICE_STATUSES)


def test_every_sensor_state_shows_as_the_acquisition_state_of_its_name():
    for state in SensorState:
        assert AcquisitionState.of_sensor(state).value == state.value
    assert FAULTS < set(SensorState)
    assert {SensorState.READY, SensorState.READING, SensorState.INITIALIZING}.isdisjoint(FAULTS)


@pytest.mark.parametrize("member", [*AcquisitionState, *DeviceStatus, *SensorState], ids=repr)
def test_a_member_is_its_bare_string_everywhere(member):
    assert type(member.value) is str
    assert json.dumps({"state": member}, separators=(",", ":")) == f'{{"state":"{member.value}"}}'
    assert f"{member}" == str(member) == member.value      # str() is also what %s and logging use
    # Equal and hashed alike: dict keys and set lookups by name still find it.
    assert member == member.value and hash(member) == hash(member.value)


def test_state_events_take_names_and_refuse_unknown_ones():
    assert StateEvent("dev", "Ready").state is SensorState.READY
    assert StateEvent("dev", SensorState.ERROR, "x").state is SensorState.ERROR
    with pytest.raises(ValueError, match="Sleeping"):
        StateEvent("dev", "Sleeping")


def test_the_wire_carries_the_bare_names(serve):
    srv = serve()
    dev = device_of(srv, "Simradix Select")["deviceId"]
    assert b'"status":"Available"' in srv.http.get(srv.url(f"{API}/devices/{dev}")).content
    sid = create_session(srv, dev)["sessionId"]
    assert b'"status":"InUse"' in srv.http.get(srv.url(f"{API}/devices/{dev}")).content
    status = srv.http.get(srv.url(f"{API}/acquisition/{sid}/status"))
    assert b'"state":"NoAcquisitionInfo"' in status.content
    states, _ = expose(srv, sid, dev, subscribe_status(srv, sid))
    assert states[-4:] == ["Reading", "Processing", "Storing", "NewImage"]
