"""sensord.daemon.forward.filter_spec: the text that names what is forwarded, parsed once."""
from __future__ import annotations

import dataclasses

import pytest

from sensord.daemon.dsio import filter_params
from sensord.daemon.forward import filter_spec
from sensord.daemon.forward.filter_spec import FilterSpec


@pytest.mark.parametrize("text, expected", [
    ("raw", FilterSpec("raw")),
    ("unmap", FilterSpec("unmap")),
    ("select:edgePro", FilterSpec("select", mode="edgePro")),
    ("supreme:general:70", FilterSpec("supreme", task="general", sharpness=70.0)),
    ("ae:endodontic:12.5", FilterSpec("ae", task="endodontic", sharpness=12.5)),
])
def test_canonical_text_parses_and_prints_back_unchanged(text, expected):
    spec = filter_spec.parse(text)
    assert spec == expected and str(spec) == text


@pytest.mark.parametrize("text, canonical", [
    ("RAW", "raw"),
    ("select:edgepro", "select:edgePro"),
    ("Select: SMOOTH ", "select:smooth"),
    ("supreme:Hygiene:70.0", "supreme:hygiene:70"),
    ("ae:general:0", "ae:general:0"),
    ("ae:general:100.0", "ae:general:100"),
    ("supreme:general:33.333", "supreme:general:33.333"),
])
def test_spellings_are_made_canonical(text, canonical):
    spec = filter_spec.parse(text)
    assert str(spec) == canonical
    assert filter_spec.parse(canonical) == spec            # the canonical text reads back the same


@pytest.mark.parametrize("mode", filter_params.SELECT_MODES)
def test_every_select_mode_of_the_filters_api_is_accepted(mode):
    assert filter_spec.parse(f"select:{mode}").kwargs() == {"mode": mode}


@pytest.mark.parametrize("name, tasks", [("supreme", filter_params.SUPREME_TASKS),
                                         ("ae", filter_params.AE_TASKS)])
def test_every_task_of_the_filters_api_is_accepted(name, tasks):
    for task in tasks:
        spec = filter_spec.parse(f"{name}:{task}:50")
        assert spec.kwargs() == {"task": task, "sharpness": 50.0}


def test_kwargs_are_what_the_filters_take():
    assert filter_spec.parse("raw").kwargs() == {} and filter_spec.parse("raw").is_raw
    assert filter_spec.parse("unmap").kwargs() == {} and not filter_spec.parse("unmap").is_raw


@pytest.mark.parametrize("fields", [
    {"name": "blur"},
    {"name": "supreme"},                                            # its parameters missing
    {"name": "select", "task": "general"},                          # another filter's parameter
    {"name": "raw", "mode": "smooth"},
    {"name": "ae", "task": "general", "sharpness": 5.0, "mode": "smooth"},
])
def test_a_spec_made_by_hand_must_still_be_one(fields):
    with pytest.raises(ValueError, match="not a filter spec"):
        FilterSpec(**fields)


def test_a_spec_is_frozen_and_hashable():
    spec = filter_spec.parse("select:smooth")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.mode = "edgePro"
    assert len({spec, filter_spec.parse("select:SMOOTH")}) == 1


@pytest.mark.parametrize("text, words", [
    ("blur", ["'blur'", "select:MODE"]),
    ("", ["expected"]),
    ("raw:x", ["'raw:x'", "expected"]),
    ("unmap:1", ["expected"]),
    ("select", ["expected"]),
    ("select:fancy", ["'select:fancy'", "enhancementMode", "edgePro"]),
    ("select:smooth:1", ["expected"]),
    ("supreme:general", ["expected"]),
    ("supreme:general:lots", ["sharpness", "'lots'"]),
    ("supreme:general:101", ["sharpness", "100"]),
    ("supreme:general:-1", ["sharpness"]),
    ("supreme:general:nan", ["sharpness"]),
    ("supreme:general:inf", ["sharpness"]),
    ("supreme:1:50", ["task", "general"]),                 # an index is not a task name here
    ("ae:hygiene:50", ["'ae:hygiene:50'", "task", "restorative"]),   # hygiene is supreme's only
    ("ae:general:50:1", ["expected"]),
])
def test_bad_specs_are_refused_with_a_clear_message(text, words):
    with pytest.raises(ValueError) as caught:
        filter_spec.parse(text)
    for word in words:
        assert word in str(caught.value), str(caught.value)


@pytest.mark.parametrize("value", [None, 5, ["select", "smooth"], {"name": "raw"}])
def test_a_spec_that_is_not_text_is_refused(value):
    with pytest.raises(ValueError, match="filter must be a string"):
        filter_spec.parse(value)


# -- the callers: start, reload and the forward endpoint use the same parse --

def test_a_bad_rule_stops_the_start(tmp_path):
    from sensord.daemon.service import Sensord
    from tests.support.forward import target
    from tests.support.server import make_settings

    settings = make_settings(tmp_path, forward={"targets": [target("http://127.0.0.1:9")],
                                                "rules": [{"target": "dm", "filter": "select:fancy"}]})
    with pytest.raises(ValueError, match="'select:fancy'.*enhancementMode"):
        Sensord(settings)


def test_reload_refuses_a_bad_rule_and_keeps_a_good_one_canonical(serve, datamint, tmp_path):
    from sensord.daemon.host import reload
    from tests.support.forward import target
    from tests.support.server import make_settings

    _, url = datamint
    state = tmp_path / "state"
    srv = serve(state_dir=state, forward={"targets": [target(url)]})

    def settings_with(rule_filter):
        return make_settings(state, forward={"targets": [target(url)],
                                             "rules": [{"target": "dm", "filter": rule_filter}]})

    assert reload.reload(srv.daemon, lambda: settings_with("ae:hygiene:50")) == []
    assert srv.daemon.forwarding.rules == [] and srv.daemon.settings.forward.rules == []
    assert reload.reload(srv.daemon, lambda: settings_with("Supreme:GENERAL:70.0")) == ["forward.rules"]
    assert srv.daemon.forwarding.rules == [("dm", "supreme:general:70")]


def test_the_forward_endpoint_refuses_a_bad_spec_and_stores_a_good_one_canonical(serve, datamint):
    from tests.support import images
    from tests.support.filters_api import assert_error, upload
    from tests.support.forward import target

    _, url = datamint
    srv = serve(forward={"targets": [target(url)]})
    rid = upload(srv, images.image_info()).json()["id"]
    forward = "/api/sensord/v1/forward"
    assert_error(srv.http.post(srv.url(forward), json={"target": "dm", "resourceId": rid,
                                                       "filter": "supreme:general:lots"}),
                 400, "supreme:general:lots", "sharpness")
    assert_error(srv.http.post(srv.url(forward), json={"target": "dm", "resourceId": rid, "filter": 7}),
                 400, "filter must be a string")
    queued = srv.http.post(srv.url(forward), json={"target": "dm", "resourceId": rid, "filter": "select:edgepro"})
    assert queued.status_code == 202, queued.text
    [entry_id] = queued.json()["entries"]
    assert srv.daemon.outbox.get(entry_id).filter == "select:edgePro"
