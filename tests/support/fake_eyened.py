"""A fake eyened platform: token auth and the single-image import, as the server behaves.

What it copies from the real server (see PLATFORMS.md): tokens from
``POST /api/auth/token`` that expire, 401 for a missing, unknown or expired
bearer; ``POST /api/import/image`` that answers 422 for a malformed body,
500 for a missing or non-ISO ``study_date`` (parsed outside the error
handling), and otherwise HTTP 200 with ``success: false`` and the error for
anything the import refuses: an unknown project, a file that is not under the
image base folder, a value outside the closed lists, missing or unknown
SourceInfoID / DeviceInstanceID / ModalityID, a second import of the same
path or SOPInstanceUid (the duplicate named only in the stack trace, and only
with ``include_stack_trace``). A failed import stores nothing.

``Faults`` injects misbehaviour on demand; the Datamint fake uses it too.
"""
from __future__ import annotations

import itertools
import secrets
import threading
import time
from datetime import date, datetime
from pathlib import Path, PurePosixPath

from flask import Flask, Response, jsonify, request

MODALITIES = {"AdaptiveOptics", "ColorFundus", "ColorFundusStereo", "RedFreeFundus", "ExternalEye",
              "LensPhotograph", "Ophthalmoscope", "Autofluorescence", "FluoresceinAngiography", "ICGA",
              "InfraredReflectance", "BlueReflectance", "GreenReflectance", "OCT", "OCTA"}
_ROLLED_BACK = ("This Session's transaction has been rolled back due to a previous exception during flush. "
                "To begin a new transaction with this Session, first issue Session.rollback().")


class Faults:
    """Misbehaviour for the next requests whose path starts with ``path`` (any path when
    None) and, when given, whose method is ``method``.

    - ``fail(times, status, retry_after)``: answer that status instead;
    - ``delay(seconds)``: wait before handling (nothing happens on the server);
    - ``lose(seconds)``: handle the request (it is stored), then wait before answering,
      so a client with a shorter timeout loses the response.

    Waits end early on ``release()``, which the tests call before stopping the server.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._rules: list[dict] = []
        self._released = threading.Event()
        self.held = 0           # requests that reached a delay (and are waiting in it)

    def fail(self, times: int = 1, *, status: int = 500, retry_after: str | None = None, path: str | None = None,
             method: str | None = None):
        self._add(kind="fail", times=times, status=status, retry_after=retry_after, path=path, method=method)

    def delay(self, seconds: float, *, times: int = 1, path: str | None = None, method: str | None = None):
        self._add(kind="delay", times=times, seconds=seconds, path=path, method=method)

    def lose(self, seconds: float, *, times: int = 1, path: str | None = None, method: str | None = None):
        self._add(kind="lose", times=times, seconds=seconds, path=path, method=method)

    def release(self):
        self._released.set()

    def install(self, app: Flask) -> None:
        app.before_request(self._before)
        app.after_request(self._after)

    def _add(self, **rule):
        with self._lock:
            self._rules.append(rule)

    def _take(self, kind: str) -> dict | None:
        with self._lock:
            for rule in self._rules:
                if rule["kind"] == kind and (rule["path"] is None or request.path.startswith(rule["path"])) \
                        and rule["method"] in (None, request.method):
                    rule["times"] -= 1
                    if rule["times"] <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def _before(self):
        rule = self._take("fail")
        if rule is not None:
            headers = {"Retry-After": rule["retry_after"]} if rule["retry_after"] else {}
            return Response(f"injected failure {rule['status']}", status=rule["status"], headers=headers,
                            mimetype="text/plain")
        rule = self._take("delay")
        if rule is not None:
            with self._lock:
                self.held += 1
            self._released.wait(rule["seconds"])
        return None

    def _after(self, response):
        rule = self._take("lose")
        if rule is not None:
            self._released.wait(rule["seconds"])
        return response


class FakeEyened:
    """State is public for the tests to read: ``images``, ``patients``, ``studies``, counters."""

    def __init__(self, image_base: Path, *, users: dict | None = None, token_lifetime: float = 1800,
                 projects=("Dental",), source_info_ids=(1,), device_instance_ids=(1,), modality_ids=(1,)):
        self.image_base = Path(image_base)
        self.users = dict(users or {"sensord": "s3cret"})
        self.token_lifetime = token_lifetime
        self.projects = set(projects)
        self.known_ids = {"SourceInfoID": set(source_info_ids), "DeviceInstanceID": set(device_instance_ids),
                          "ModalityID": set(modality_ids)}
        self.images: list[dict] = []
        self.patients: dict[tuple, dict] = {}
        self.studies: dict[tuple, dict] = {}
        self.tokens_issued = 0
        self.unauthorized = 0
        self.import_calls = 0
        self.reject_all_tokens = False      # every bearer gets 401, even a fresh one
        self.faults = Faults()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._import_errors: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.app = self._build()

    # -- knobs

    def revoke_tokens(self) -> None:
        """Forget every issued token (a restart with a new secret): the next call gets 401."""
        with self._lock:
            self._tokens.clear()

    def fail_next_import(self, error: str, stack_trace: str = "") -> None:
        """The next import answers 200 ``success: false`` with this error, storing nothing."""
        with self._lock:
            self._import_errors.append((error, stack_trace))

    # -- the app

    def _build(self) -> Flask:
        app = Flask("fake_eyened")
        self.faults.install(app)
        app.add_url_rule("/api/auth/token", "token", self._token, methods=["POST"])
        app.add_url_rule("/api/import/image", "import_image", self._import, methods=["POST"])
        return app

    def _token(self):
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
                or not isinstance(body.get("password"), str):
            return jsonify(detail=[{"type": "missing", "loc": ["body"], "msg": "Field required"}]), 422
        if self.users.get(body["username"]) != body["password"]:
            return jsonify(detail="Incorrect username or password"), 401
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (body["username"], time.monotonic() + self.token_lifetime)
            self.tokens_issued += 1
        return jsonify(access_token=token, token_type="bearer", expires_in=self.token_lifetime,
                       user={"id": 1, "username": body["username"]})

    def _user(self) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        with self._lock:
            found = self._tokens.get(token) if scheme.lower() == "bearer" else None
            if found is None or found[1] <= time.monotonic() or self.reject_all_tokens:
                self.unauthorized += 1
                return None
        return found[0]

    def _import(self):
        user = self._user()
        if user is None:
            return jsonify(detail="Could not validate credentials"), 401, {"WWW-Authenticate": "Bearer"}
        with self._lock:
            self.import_calls += 1
        body = request.get_json(silent=True)
        data = body.get("data") if isinstance(body, dict) else None
        options = body.get("options") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not isinstance(options, dict) \
                or not isinstance(data.get("project_name"), str) or not isinstance(data.get("image"), str):
            return jsonify(detail=[{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}]), 422
        try:    # the real server parses the date before its try block: a bad one is a 500
            study_day = date.fromisoformat(data.get("study_date"))
        except (TypeError, ValueError):
            return Response("Internal Server Error", status=500, mimetype="text/plain")
        with self._lock:
            injected = self._import_errors.pop(0) if self._import_errors else None
            if injected is not None:
                error, trace = injected
            else:
                error, trace = self._import_locked(data, options, study_day, user)
        if error is None:
            return jsonify(success=True, message="Import completed successfully",
                           data={"project_name": data["project_name"], "image_count": 1}, error=None,
                           stack_trace=None)
        return jsonify(success=False, message="Import failed", data=None, error=error,
                       stack_trace=trace if options.get("include_stack_trace") else None)

    def _import_locked(self, data: dict, options: dict, study_day: date, user: str):
        """(error, stack trace) on failure, after storing nothing; (None, None) once stored."""
        def failed(exception_line: str, error: str | None = None):
            trace = ("Traceback (most recent call last):\n"
                     '  File "/app/server/routes/import_api.py", line 97, in import_single_image\n'
                     "    images = importer.import_one(image_data)\n" + exception_line)
            return (error or exception_line.split(": ", 1)[-1]), trace

        project = data["project_name"]
        if project not in self.projects:
            return failed(f"ValueError: Project {project!r} does not exist and create_projects is False")
        relative = PurePosixPath(data["image"])
        path = self.image_base.joinpath(*relative.parts)
        if relative.is_absolute() or ".." in relative.parts or not path.is_file():
            return failed(f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'")
        props = data.get("image_props") or {}
        for column, allowed in (("Modality", MODALITIES), ("Laterality", {"L", "R"}),
                                ("DICOMModality", {"OP", "OPT", "SC"})):
            if column in props and props[column] not in allowed:
                return failed(f"sqlalchemy.exc.DataError: (pymysql.err.DataError) (1265, \"Data truncated "
                              f"for column '{column}' at row 1\")", _ROLLED_BACK)
        if "Modality" not in props:
            return failed("sqlalchemy.exc.IntegrityError: (pymysql.err.IntegrityError) (1048, \"Column "
                          "'Modality' cannot be null\")", _ROLLED_BACK)
        for column, known in self.known_ids.items():
            if props.get(column) is None:
                return failed(f"sqlalchemy.exc.IntegrityError: (pymysql.err.IntegrityError) (1048, \"Column "
                              f"'{column}' cannot be null\")", _ROLLED_BACK)
            if props[column] not in known:
                return failed(f"sqlalchemy.exc.IntegrityError: (pymysql.err.IntegrityError) (1452, 'Cannot add "
                              f"or update a child row: a foreign key constraint fails ({column})')", _ROLLED_BACK)
        if "AcquisitionDateTime" in props:
            try:
                datetime.fromisoformat(str(props["AcquisitionDateTime"]))
            except ValueError:
                return failed(f"sqlalchemy.exc.DataError: (pymysql.err.DataError) (1292, \"Incorrect datetime "
                              f"value: '{props['AcquisitionDateTime']}'\")", _ROLLED_BACK)
        for key, value in (("DatasetIdentifier", str(relative)), ("SOPInstanceUid", props.get("SOPInstanceUid"))):
            if value is not None and any(record[key] == value for record in self.images):
                # MySQL shows at most 64 characters of the duplicate value
                return failed(f"sqlalchemy.exc.IntegrityError: (pymysql.err.IntegrityError) (1062, \"Duplicate "
                              f"entry '{value[:64]}' for key 'ImageInstance.{key}'\")", _ROLLED_BACK)
        patient_key = (project, data.get("patient_identifier"))
        if patient_key not in self.patients and not options.get("create_patients", False):
            return failed(f"ValueError: Patient {patient_key[1]!r} not found and create_patients is False")
        study_key = (*patient_key, study_day.isoformat())
        if study_key not in self.studies and not options.get("create_studies", False):
            return failed(f"ValueError: Study on {study_key[2]} not found and create_studies is False")

        self.patients.setdefault(patient_key, dict(data.get("patient_props") or {}))
        self.studies.setdefault(study_key, dict(data.get("study_props") or {}))
        self.images.append({
            "ImageInstanceID": next(self._ids), "project": project, "patient": patient_key[1],
            "study_date": study_key[2], "series_props": data.get("series_props") or {},
            "DatasetIdentifier": str(relative), "SOPInstanceUid": props.get("SOPInstanceUid"),
            "image_props": dict(props), "bytes": path.read_bytes(), "imported_by": user,
        })
        return None, None
