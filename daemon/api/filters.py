"""The DSIO Filters API v1: image resources and the filters run on them."""
from __future__ import annotations

import logging
import time

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request, url_for

from sensord import filters
from sensord.daemon.dsio import filter_params
from sensord.daemon.dsio.imageinfo import lut_from_info
from sensord.daemon.store.resource_folder import Resource
from sensord.daemon.store.resources import QuotaExceeded
from sensord.filters import codecs, footprint

from . import roles
from .body import json_body
from .errors import ApiError
from .streamed import bytes_response, file_response
from .upload import read_upload

log = logging.getLogger("sensord.filters")

bp = Blueprint("filters_api", __name__, url_prefix="/api/dsio/filters/v1")


def _services():
    return current_app.extensions["sensord"]


def _resource(rid: str) -> Resource:
    """The resource, if this request's user may see it; another's answers 404 as if absent."""
    res = _services().store.get(rid)
    if res is None or not _visible(res):
        raise ApiError(404, f"no image resource {rid!r} (unknown, deleted or expired)")
    return res


def _visible(res: Resource) -> bool:
    """Its creator sees it, and so does the owner of the live session a linked resource points into."""
    if roles.may_see(res.owner):
        return True
    return res.modality_session is not None and _session_visible(str(res.modality_session.get("sessionId")))


def _resource_json(res: Resource, status: int = 200):
    url = url_for("filters_api.get_media", rid=res.id, _external=True)
    response = jsonify(res.to_json(url))
    response.status_code = status
    if status == 201:
        response.headers["Location"] = url_for("filters_api.get_image", rid=res.id, _external=True)
    return response


@bp.get("")
def root():
    # Clients GET the base URL to learn whether the service is up.
    return jsonify({"service": "sensord", "api": "dsio-filters", "version": "1.0"})


@bp.post("/images")
def create_image():
    services = _services()
    limits = services.settings.images
    upload = read_upload(request, max_width=limits.max_width, max_height=limits.max_height,
                         max_info_bytes=limits.max_info_kb << 10, budget=services.pixel_budget)
    try:
        # The PNG is proved while its bytes are written: a 201 means both.
        res = services.store.create(image_info=upload.image_info, media=upload.media, proof=upload.prove,
                                    owner=roles.current_user() or "")
    except QuotaExceeded:
        upload.prove()      # a file that is no proper PNG is the client's to hear of first (400)
        raise               # QuotaExceeded / StoreFull carry their 507 to the client themselves.
    return _resource_json(res, 201)


@bp.post("/images/modality")
def create_modality_image():
    body = json_body()
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a ModalitySession object")
    keys = {str(k).lower(): v for k, v in body.items()}
    session_id, image_id = keys.get("sessionid"), keys.get("imageid")
    for name, value in (("sessionId", session_id), ("imageId", image_id)):
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"{name} is required (a string)")
    services = _services()
    image = services.session_images.find(session_id, image_id)
    if image is None or not _session_visible(session_id):
        raise ApiError(404, f"no image {image_id!r} in a live modality session {session_id!r}")
    res = services.store.create_linked(image_info=image.image_info, session_id=session_id, image_id=image_id,
                                       owner=roles.current_user() or "")
    return _resource_json(res, 201)


def _session_visible(session_id: str) -> bool:
    """Whether this request's user may see the live session (False once it has ended)."""
    if roles.is_operator():
        return True         # every session, and no lookup needed
    try:
        return roles.may_see(_services().sessions.get(session_id).owner)
    except LookupError:
        return False


@bp.get("/images/<rid>")
def get_image(rid: str):
    return _resource_json(_resource(rid))


@bp.delete("/images/<rid>")
def delete_image(rid: str):
    _resource(rid)      # another's resource: 404 before anything is removed
    if not _services().store.delete(rid):
        raise ApiError(404, f"no image resource {rid!r} (unknown, deleted or expired)")
    return Response(status=204)


def _gone(res: Resource) -> ApiError:
    if res.linked:
        return ApiError(410, "the modality session that held this image has ended")
    return ApiError(410, "the media of this resource is no longer on disk")


@bp.get("/images/<rid>/media")
def get_media(rid: str):
    res = _resource(rid)
    if res.linked:
        image = _services().session_images.find(**_link(res))
        data = image.media() if image is not None else None
        if data is None:
            raise _gone(res)
        return bytes_response(data, res.media_type)
    answer = file_response(_services().store.media_path(res), res.media_type)
    if answer is None:
        raise _gone(res)
    return answer


def _link(res: Resource) -> dict:
    """The session_images.find() arguments of a linked resource (callers check res.linked)."""
    link = res.modality_session
    if link is None:
        raise RuntimeError(f"resource {res.id} is not linked to a session image")
    return {"session_id": link["sessionId"], "image_id": link["imageId"]}


def _pixels(res: Resource) -> np.ndarray:
    services = _services()
    if res.linked:
        image = services.session_images.find(**_link(res))
        pixels = image.pixels() if image is not None else None
    else:
        pixels = services.store.pixels(res)
    if pixels is None:
        raise _gone(res)
    return pixels


def _media_type() -> str:
    if not request.headers.get("Accept", "").strip():
        return codecs.MEDIA_TYPES[0]
    best = request.accept_mimetypes.best_match(codecs.MEDIA_TYPES)
    if best is None:
        raise ApiError(406, f"cannot answer in {request.headers['Accept']!r}; "
                            f"available: {', '.join(codecs.MEDIA_TYPES)}")
    return best


def _run(rid: str, name: str):
    res = _resource(rid)
    try:
        call = filter_params.parse_request(name, json_body(optional=True))
        # A map in the body wins (the beta SDK sends one); else the image's own.
        lut = call.lut if call.lut is not None else lut_from_info(res.image_info)
    except ValueError as err:
        raise ApiError(400, str(err)) from None
    if name == "unmap" and lut is None:
        # Answering the input unchanged would be a 200 for work not done.
        raise ApiError(400, "nothing to unmap: the image's imageInfo has no lutInfo and the request gave none")
    media_type = _media_type()
    pixels = _pixels(res)       # a decode, if one is needed, reserves its own working memory
    options = dict(call.options)
    if name == "supreme":
        binning = call.binning or (res.image_info.get("acquisitionInfo") or {}).get("binning")
        options["binned"] = binning == "Binned2x2"
    height, width = pixels.shape
    # The filter's working copies and the encoding, from the one pixel budget:
    # a wait, then 503 with Retry-After when busy; 413 if it could never fit.
    with _services().pixel_budget.reserve(footprint.filter_call_bytes(name, width, height),
                                          what=f"the {name} filter on a {width}x{height} image"):
        started = time.perf_counter()
        if name == "unmap":
            assert lut is not None      # refused above: nothing to unmap
            out = filters.lut_unmap(pixels, lut=lut)
            lut = None   # the output is linear again: window it from its histogram
        else:
            out = getattr(filters, name)(pixels, lut=lut, **options)
        computed = time.perf_counter()
        images = _services().settings.images
        data = codecs.encode(out, media_type=media_type, lut=lut,
                             png_compression=images.png_compression, jpeg_quality=images.jpeg_quality)
        del out
    log.debug("%s %s %s: filter %.1f ms, encode %.1f ms", name, rid, options,
              (computed - started) * 1e3, (time.perf_counter() - computed) * 1e3)
    return bytes_response(data, media_type)


@bp.post("/images/<rid>/filters/unmap")
def unmap(rid: str):
    return _run(rid, "unmap")


@bp.post("/images/<rid>/filters/select")
def select(rid: str):
    return _run(rid, "select")


@bp.post("/images/<rid>/filters/supreme")
def supreme(rid: str):
    return _run(rid, "supreme")


@bp.post("/images/<rid>/filters/ae")
def ae(rid: str):
    return _run(rid, "ae")
