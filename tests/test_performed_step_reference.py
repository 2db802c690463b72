"""The images of a worklist-bound session name their MPPS step (Referenced
Performed Procedure Step Sequence, General Series): forward/rules.py puts the
step's UID in the context only when MPPS is on and the session is bound, and
platforms/dicom.py writes it with the step's ID as the N-CREATE sends it. A
de-identified copy drops it. (Through the running daemon with an MPPS SCP:
test_mpps_http.py and test_clinic_end_to_end.py.)
"""
from __future__ import annotations

import io
from datetime import datetime, timezone

import pydicom
import pytest

from sensord.daemon.forward import deidentify, mpps_messages
from sensord.daemon.forward.platforms import dicom, dicom_deid
from sensord.daemon.forward.rules import PERFORMED_STEP, Forwarding
from tests.support import images
from tests.support.delivery import make_delivery
from tests.support.dicom3tools import dciodvfy, problems, validate  # noqa: F401  (a fixture)
from tests.support.fake_dicomweb import FakeStow
from tests.support.loopback import serving, wait_until
from tests.support.modality import API, create_session, expose, subscribe_status

MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"
STEP = mpps_messages.mpps_uid("session-1")
BOUND = {"patientId": "P-1", "accessionNumber": "ACC-7", "scheduledProcedureStepId": "SPS-7",
         "worklistBound": True}
KEY = b"0123456789abcdef0123456789abcdef"
IDENTIFIED = {"patientId": "P-0001", "patientName": "Doe^Jane", "birthDate": "1980-04-02", "sex": "F",
              "accessionNumber": "ACC-778812", "studyDate": "2026-11-23", "tooth": "36", "laterality": "L",
              "scheduledProcedureStepId": "SPS-1", "worklistBound": True}
SIM = "sim://?models=select0&time_scale=0.01&seed=5"
STUDY = "1.2.826.0.1.3680043.8.498.4243"


def build_object(tmp_path, context: dict, *, dates: str | None = None):
    """The Dataset and Part-10 bytes of a 64x48 image, de-identified (as for ``deidentify = true``
    with ``deidentify_dates = dates``) when ``dates`` is given."""
    item = make_delivery(tmp_path, context=context, height=48, width=64)
    if dates is not None:
        item = deidentify.Deidentifier(KEY, dates).apply(item)
    pixels = images.decode(item.png_path.read_bytes())
    ds = dicom.build_dataset(pixels, item.image_info, item.context, image_id=item.image_id, tz=timezone.utc)
    if dates is not None:
        dicom_deid.apply_profile(ds, dates=dates, pseudonym=item.context.get("patientId"))
    return ds, dicom.to_bytes(ds)


def build(tmp_path, *, context: dict):
    return build_object(tmp_path, context)[0]


def bind(session_id: str, context: dict) -> dict:
    """The worklist binding's hook, stood in for: ACC-7 is the one scheduled item."""
    if context.get("accessionNumber") == "ACC-7":
        return {**context, "patientId": "P-7", "studyInstanceUid": STUDY, "worklistBound": True}
    return context


def forwarding(*, performed_steps: bool, hook=None) -> Forwarding:
    # session_context touches neither the outbox nor the forwarder.
    return Forwarding(None, None, [], context_hook=hook, performed_steps=performed_steps)  # type: ignore[arg-type]


# -- forward/rules.py: who gets the key -----------------------------------------
def test_a_bound_session_gets_its_step_uid_when_mpps_is_on():
    context = forwarding(performed_steps=True).session_context("session-1", dict(BOUND))
    assert context == {**BOUND, PERFORMED_STEP: STEP}


@pytest.mark.parametrize("performed_steps, context", [
    (False, BOUND),                                     # MPPS off: no step is reported, none named
    (True, {**BOUND, "worklistBound": False}),          # not bound: no step
    (True, {"patientId": "P-1"}),
])
def test_no_step_uid_without_mpps_or_binding(performed_steps, context):
    assert PERFORMED_STEP not in forwarding(performed_steps=performed_steps).session_context("session-1", context)


def test_a_clients_own_step_uid_is_dropped_and_the_hooks_binding_counts():
    claimed = {"patientId": "P-1", PERFORMED_STEP: "1.2.3.4"}
    assert forwarding(performed_steps=True).session_context("session-1", claimed) == {"patientId": "P-1"}
    bound = forwarding(performed_steps=True, hook=lambda sid, ctx: {**ctx, **BOUND})
    assert bound.session_context("session-1", claimed)[PERFORMED_STEP] == STEP


def test_a_failing_hook_still_drops_a_claimed_step_uid():
    def broken(sid, ctx):
        raise RuntimeError("worklist gone")
    out = forwarding(performed_steps=True, hook=broken).session_context("session-1", {PERFORMED_STEP: "1.2.3"})
    assert out == {}


# -- platforms/dicom.py: what is written ------------------------------------------
def test_the_builder_references_the_step_with_the_id_the_n_create_sends(tmp_path):
    ds = build(tmp_path, context={**BOUND, PERFORMED_STEP: STEP})
    [ref] = ds.ReferencedPerformedProcedureStepSequence
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (MPPS_CLASS, STEP)
    create = mpps_messages.build_create(BOUND, step_uid=STEP, study_uid=ds.StudyInstanceUID, station_ae="SENSORD",
                                        started=datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc))
    assert ds.PerformedProcedureStepID == create.PerformedProcedureStepID
    assert mpps_messages.SOP_CLASS == MPPS_CLASS
    # The start is not guessed (a later image cannot know the step's first).
    assert "PerformedProcedureStepStartDate" not in ds and "PerformedProcedureStepStartTime" not in ds


def test_without_the_key_nothing_is_referenced(tmp_path):
    ds = build(tmp_path, context=dict(BOUND))
    assert "ReferencedPerformedProcedureStepSequence" not in ds and "PerformedProcedureStepID" not in ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")     # pydicom's, on the assignment
def test_a_bad_step_uid_is_refused_naming_the_attribute(tmp_path):
    with pytest.raises(ValueError, match="ReferencedSOPInstanceUID"):
        build(tmp_path, context={PERFORMED_STEP: "not a uid"})


def test_a_deidentified_copy_drops_the_reference(tmp_path):
    ds, _ = build_object(tmp_path, {**IDENTIFIED, PERFORMED_STEP: STEP}, dates="shift")
    assert "ReferencedPerformedProcedureStepSequence" not in ds and "PerformedProcedureStepID" not in ds
    assert STEP not in str(ds)
    # The context's copy of the UID is replaced too (a keyed UID), before any builder sees it.
    clean, _ = deidentify.deidentify({**IDENTIFIED, PERFORMED_STEP: STEP}, {}, deidentify.Deidentifier(KEY, "shift"))
    assert clean[PERFORMED_STEP] != STEP


@pytest.mark.process
@pytest.mark.parametrize("dates", [None, "shift"])
def test_dciodvfy_accepts_the_referencing_image(tmp_path, dciodvfy, dates):  # noqa: F811
    ds, data = build_object(tmp_path, {**IDENTIFIED, PERFORMED_STEP: STEP}, dates=dates)
    assert ("ReferencedPerformedProcedureStepSequence" in ds) == (dates is None)
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    output = validate(dciodvfy, path)
    assert problems(output) == [], output


# -- service.py: the switch is [mpps] host ------------------------------------------
@pytest.mark.process
def test_without_mpps_a_bound_sessions_image_names_no_step(serve):
    archive = FakeStow()
    with serving(archive) as base:
        srv = serve(prepare=lambda daemon: setattr(daemon.forwarding, "context_hook", bind),
                    drivers={"urls": [SIM]},
                    forward={"targets": [{"name": "pacs", "kind": "dicomweb", "url": base, "timeout": 10}],
                             "rules": [{"target": "pacs"}]})
        device = srv.http.get(srv.url(API + "/devices")).json()[0]["deviceId"]
        sid = create_session(srv, device, context={"accessionNumber": "ACC-7"})["sessionId"]
        stream = subscribe_status(srv, sid)
        try:
            expose(srv, sid, device, stream)
        finally:
            stream.close()
        assert wait_until(lambda: len(archive.instances) == 1, 60)
    [held] = [pydicom.dcmread(io.BytesIO(part)) for part in archive.instances.values()]
    assert held.StudyInstanceUID == STUDY          # bound all the same
    assert "ReferencedPerformedProcedureStepSequence" not in held
