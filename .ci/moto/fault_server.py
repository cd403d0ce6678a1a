#!/usr/bin/env python3
"""moto server with a fault-injecting layer in front, for Portcullis' AWS tests.

It serves moto's own app (``DomainDispatcherApplication(create_backend_app)``,
exactly what ``moto_server`` serves) and adds an admin API under ``/_fault/``
that makes chosen AWS operations answer errors, slow down, or report
``IN_PROGRESS`` / ``FAILED`` account-assignment statuses. Every other request
goes to moto untouched (including ``/moto-api/...``). See README.md.

    python fault_server.py [--host 127.0.0.1] [--port PORT]

The port may also come from $FAULT_SERVER_PORT or $MOTO_PORT (default 5000).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

# Operations whose responses carry an account-assignment status object, and
# the request field naming the request id they poll.
STATUS_KEYS = {
    "CreateAccountAssignment": "AccountAssignmentCreationStatus",
    "DescribeAccountAssignmentCreationStatus": "AccountAssignmentCreationStatus",
    "DeleteAccountAssignment": "AccountAssignmentDeletionStatus",
    "DescribeAccountAssignmentDeletionStatus": "AccountAssignmentDeletionStatus",
}
POLL_REQUEST_ID_FIELDS = {
    "DescribeAccountAssignmentCreationStatus": "AccountAssignmentCreationRequestId",
    "DescribeAccountAssignmentDeletionStatus": "AccountAssignmentDeletionRequestId",
}
DEFAULT_STATUS_FOR_CODE = {
    "InternalServerException": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
}
DEFAULT_CODE_FOR_STATUS = {
    500: "InternalServerException",
    503: "ServiceUnavailable",
    429: "ThrottlingException",
    400: "ThrottlingException",
}
DEFAULT_MESSAGE_FOR_CODE = {
    "ThrottlingException": "Rate exceeded",
    "ConflictException": "Operation conflicts with another operation in progress",
    "InternalServerException": "Internal server error",
    "ServiceUnavailable": "Service unavailable",
}
LOG_LIMIT = 200_000
JSON_11 = "application/x-amz-json-1.1"



# REST APIs name their operation by method and path, not by X-Amz-Target: EventBridge
# Scheduler's, so that faults can be armed for "CreateSchedule" like for any other call.
_REST_OPERATIONS = {
    ("POST", "schedules"): "CreateSchedule",
    ("PUT", "schedules"): "UpdateSchedule",
    ("GET", "schedules"): "GetSchedule",
    ("DELETE", "schedules"): "DeleteSchedule",
    ("POST", "schedule-groups"): "CreateScheduleGroup",
    ("GET", "schedule-groups"): "GetScheduleGroup",
    ("DELETE", "schedule-groups"): "DeleteScheduleGroup",
}


def _rest_operation(method: str, path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2:
        return _REST_OPERATIONS.get((method, parts[0]))
    if len(parts) == 1 and method == "GET":
        return {"schedules": "ListSchedules", "schedule-groups": "ListScheduleGroups"}.get(parts[0])
    return None

class BadRequest(Exception):
    pass


def _read_body(environ: dict[str, Any]) -> bytes:
    """Reads the request body and puts it back so the inner app can read it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    if body or length:
        environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json_response(start_response: Any, status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload, indent=None, default=str).encode()
    start_response(
        f"{status} {_reason(status)}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class FaultInjector:
    """WSGI middleware: the /_fault/ admin API plus fault application."""

    def __init__(self, inner: Any, seed: int | None = None):
        self.inner = inner
        self.lock = threading.Lock()
        self.rules: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.seq = 0
        self.rule_seq = 0
        # request id -> FAILED status body: AWS keeps answering FAILED for a
        # request id, while moto (after the revert below) would not know it.
        self.sticky: dict[str, tuple[str, dict[str, Any]]] = {}
        # Draws for rules with a `probability`: seeded (--seed, $FAULT_SEED or
        # POST /_fault/seed) so that a run can be replayed call for call.
        self.rng = random.Random(seed)
        self.seed = seed

    # ------------------------------------------------------------------ admin
    def _admin(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")[len("/_fault") :].strip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            raw = _read_body(environ)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                raise BadRequest(f"body is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            if path in ("", "health") and method == "GET":
                return _json_response(start_response, 200, {"ok": True})
            if method == "GET" and path == "log":
                return _json_response(start_response, 200, self._get_log(environ))
            if method == "GET" and path == "rules":
                with self.lock:
                    return _json_response(start_response, 200, [dict(r) for r in self.rules])
            if method != "POST":
                return _json_response(start_response, 405, {"error": f"{method} /_fault/{path}"})
            if path == "arm":
                rule = self._make_rule(body, "arm")
            elif path == "in_progress":
                rule = self._make_rule(body, "in_progress")
            elif path == "fail":
                rule = self._make_rule(body, "fail")
            elif path == "disarm":
                op = body.get("operation")
                with self.lock:
                    before = len(self.rules)
                    self.rules = [r for r in self.rules if op is not None and r["operation"] != op]
                    removed = before - len(self.rules)
                return _json_response(start_response, 200, {"removed": removed})
            elif path == "reset":
                with self.lock:
                    self.rules.clear()
                    self.log.clear()
                    self.sticky.clear()
                return _json_response(start_response, 200, {"reset": True})
            elif path == "seed":
                seed = body.get("seed")
                if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                    raise BadRequest('"seed" must be an integer (or null for an unseeded generator)')
                with self.lock:
                    self.rng = random.Random(seed)
                    self.seed = seed
                return _json_response(start_response, 200, {"seed": seed})
            elif path == "clear_log":
                with self.lock:
                    self.log.clear()
                return _json_response(start_response, 200, {"cleared": True})
            else:
                return _json_response(start_response, 404, {"error": f"unknown /_fault/{path}"})
            with self.lock:
                self.rule_seq += 1
                rule["id"] = self.rule_seq
                self.rules.append(rule)
                armed = dict(rule)
            return _json_response(start_response, 200, {"armed": armed})
        except BadRequest as e:
            return _json_response(start_response, 400, {"error": str(e)})

    def _get_log(self, environ: dict[str, Any]) -> list[dict[str, Any]]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        op = query.get("operation", [None])[0]
        since = int(query.get("since", ["0"])[0] or 0)
        with self.lock:
            return [
                dict(e)
                for e in self.log
                if e["seq"] > since and (op is None or e["operation"] == op)
            ]

    @staticmethod
    def _make_rule(body: dict[str, Any], endpoint: str) -> dict[str, Any]:
        op = body.get("operation")
        if not isinstance(op, str) or not op:
            raise BadRequest('"operation" (string) is required, e.g. "CreateAccountAssignment" or "*"')
        always = bool(body.get("always", False))
        count = body.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise BadRequest('"count" must be an integer >= 1')
        delay_ms = body.get("delay_ms", 0)
        if not isinstance(delay_ms, (int, float)) or isinstance(delay_ms, bool) or delay_ms < 0:
            raise BadRequest('"delay_ms" must be a number >= 0')
        probability = body.get("probability", 1)
        if (
            not isinstance(probability, (int, float))
            or isinstance(probability, bool)
            or not 0 < probability <= 1
        ):
            raise BadRequest('"probability" must be a number in (0, 1]')
        rule: dict[str, Any] = {
            "operation": op,
            "remaining": None if always else count,
            "always": always,
            "delay_ms": delay_ms,
            "probability": float(probability),
            "hits": 0,
        }
        if endpoint == "arm":
            status, code = body.get("status"), body.get("code")
            if status is None and code is None:
                if not delay_ms:
                    raise BadRequest('give "status" and/or "code" for an error, or "delay_ms" for latency')
                rule["kind"] = "delay"
            else:
                if code is None:
                    code = DEFAULT_CODE_FOR_STATUS.get(int(status), "InternalServerException")
                if status is None:
                    status = DEFAULT_STATUS_FOR_CODE.get(code, 400)
                if not isinstance(status, int) or not 400 <= status <= 599:
                    raise BadRequest('"status" must be an HTTP error status (400-599)')
                rule.update(
                    kind="error",
                    status=status,
                    code=str(code),
                    message=str(body.get("message", DEFAULT_MESSAGE_FOR_CODE.get(code, f"{code} (injected)"))),
                )
        elif endpoint == "in_progress":
            rule["kind"] = "in_progress"
        else:
            rule["kind"] = "fail"
            rule["reason"] = str(body.get("reason", "Injected failure"))
            rule["revert"] = bool(body.get("revert", True))
        return rule

    # -------------------------------------------------------------- matching
    def _pick(self, op: str | None) -> tuple[float, dict[str, Any] | None]:
        """Returns (background latency ms, the rule that acts on this call).

        A rule with a `probability` below 1 fires only on some calls. All such rules
        that could act on a call share one draw `u` in [0, 1), each owning its own
        band of it in the order below: throttling at 0.3 then a conflict at 0.1 give
        [0, 0.3) and [0.3, 0.4), so exactly 30 % and 10 % of the calls, never both.
        A rule that does not fire is not consumed. Background latency rules with a
        probability draw on their own.
        """
        if op is None:
            return 0.0, None
        with self.lock:
            matching = [r for r in self.rules if r["operation"] in (op, "*")]
            # op-specific rules before wildcard ones, each in arming order
            matching.sort(key=lambda r: (r["operation"] == "*", r["id"]))
            background = 0.0
            for r in matching:
                if r["always"] and r["kind"] == "delay":
                    if r["probability"] >= 1 or self.rng.random() < r["probability"]:
                        background += r["delay_ms"]
            candidates = [r for r in matching if not r["always"] and r["remaining"] > 0]
            candidates += [r for r in matching if r["always"] and r["kind"] != "delay"]
            u = self.rng.random() if any(r["probability"] < 1 for r in candidates) else 0.0
            band = 0.0
            chosen = None
            for r in candidates:
                if r["probability"] >= 1:
                    chosen = r
                    break
                if band <= u < band + r["probability"]:
                    chosen = r
                    break
                band += r["probability"]
            if chosen is not None:
                chosen["hits"] += 1
                if not chosen["always"]:
                    chosen["remaining"] -= 1
                    if chosen["remaining"] == 0:
                        self.rules.remove(chosen)
                chosen = dict(chosen)
            return float(background), chosen

    def _give_back(self, rule: dict[str, Any]) -> None:
        """A status rewrite could not apply (moto answered an error): un-consume it."""
        if rule["always"]:
            return
        with self.lock:
            for r in self.rules:
                if r["id"] == rule["id"]:
                    r["remaining"] += 1
                    r["hits"] -= 1
                    return
            restored = dict(rule, remaining=1, hits=rule["hits"] - 1)
            self.rules.append(restored)

    # ---------------------------------------------------------------- moto
    def _call_inner(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, list(headers)
            return lambda data: captured.setdefault("written", []).append(data)

        result = self.inner(environ, start_response)
        try:
            chunks = list(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        body = b"".join(captured.get("written", [])) + b"".join(chunks)
        return captured["status"], captured["headers"], body

    @staticmethod
    def _revert(kind: str, request_id: str) -> bool:
        """Undo what moto did for an assignment that we report as FAILED."""
        try:
            from moto.ssoadmin.models import ssoadmin_backends
        except Exception:  # pragma: no cover
            return False
        for account in list(dict.values(ssoadmin_backends)):
            for backend in list(dict.values(account)):
                if kind == "AccountAssignmentCreationStatus":
                    for a in list(backend.account_assignments):
                        if a.request_id == request_id:
                            backend.account_assignments.remove(a)
                            return True
                else:
                    for a in list(backend.deleted_account_assignments):
                        if a.request_id == request_id:
                            backend.deleted_account_assignments.remove(a)
                            backend.account_assignments.append(a)
                            return True
        return False

    # ---------------------------------------------------------------- WSGI
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/_fault" or path.startswith("/_fault/"):
            return self._admin(environ, start_response)

        received = time.time()
        t0 = time.monotonic()
        target = environ.get("HTTP_X_AMZ_TARGET")
        op = target.split(".", 1)[1] if target and "." in target else None
        if op is None:
            op = _rest_operation(environ.get("REQUEST_METHOD", ""), path)
        raw = _read_body(environ)
        request: Any = None
        if op is not None and raw and len(raw) < 65536:
            try:
                request = json.loads(raw)
            except ValueError:
                request = None

        background_ms, rule = self._pick(op)
        delay_ms = background_ms + (rule["delay_ms"] if rule else 0)
        if delay_ms:
            time.sleep(delay_ms / 1000.0)

        fault = rule["kind"] if rule else None
        note = None
        if rule and rule["kind"] == "error":
            body = json.dumps({"__type": rule["code"], "message": rule["message"]}).encode()
            status_line = f"{rule['status']} {_reason(rule['status'])}"
            headers = [
                ("Content-Type", JSON_11),
                ("x-amzn-ErrorType", rule["code"]),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ]
        else:
            sticky = None
            if op in POLL_REQUEST_ID_FIELDS and isinstance(request, dict) and fault is None:
                with self.lock:
                    sticky = self.sticky.get(str(request.get(POLL_REQUEST_ID_FIELDS[op])))
            if sticky is not None and sticky[0] == STATUS_KEYS[op]:
                fault = "sticky_failed"
                body = json.dumps({sticky[0]: sticky[1]}).encode()
                status_line = "200 OK"
                headers = [("Content-Type", JSON_11), ("x-amzn-RequestId", str(uuid.uuid4()))]
            else:
                status_line, headers, body = self._call_inner(environ)
                if rule and rule["kind"] in ("in_progress", "fail"):
                    rewritten = self._rewrite(op, rule, status_line, body)
                    if rewritten is None:
                        self._give_back(rule)
                        note = f"{rule['kind']} not applied: moto answered {status_line.split()[0]}"
                        fault = None
                    else:
                        body = rewritten
                if path.startswith("/moto-api/reset"):
                    with self.lock:
                        self.sticky.clear()

        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        status_code = int(status_line.split()[0])
        entry = {
            "operation": op,
            "target": target,
            "method": environ.get("REQUEST_METHOD"),
            "path": path,
            "time": received,
            "duration_ms": round((time.monotonic() - t0) * 1000, 3),
            "status": status_code,
            "fault": fault,
            "rule_id": rule["id"] if rule else None,
            "error_code": rule["code"] if rule and rule["kind"] == "error" else None,
            "request": request,
        }
        if note:
            entry["note"] = note
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]
        start_response(status_line, headers)
        return [body]

    def _rewrite(self, op: str | None, rule: dict[str, Any], status_line: str, body: bytes) -> bytes | None:
        if not status_line.startswith("200"):
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        key = STATUS_KEYS.get(op or "")
        if key is None:  # any other operation: its first top-level object with a Status
            key = next((k for k, v in doc.items() if isinstance(v, dict) and "Status" in v), None)
        if key is None or not isinstance(doc.get(key), dict):
            return None
        status = doc[key]
        if rule["kind"] == "in_progress":
            status["Status"] = "IN_PROGRESS"
            status.pop("FailureReason", None)
        else:
            status["Status"] = "FAILED"
            status["FailureReason"] = rule["reason"]
            request_id = status.get("RequestId")
            if request_id:
                if rule.get("revert", True) and key in ("AccountAssignmentCreationStatus", "AccountAssignmentDeletionStatus"):
                    self._revert(key, str(request_id))
                with self.lock:
                    self.sticky[str(request_id)] = (key, dict(status))
        return json.dumps(doc).encode()


def build_app(seed: int | None = None) -> FaultInjector:
    from moto.server import DomainDispatcherApplication, create_backend_app

    main_app = DomainDispatcherApplication(create_backend_app)
    main_app.debug = True  # type: ignore[attr-defined]  # as moto_server does
    return FaultInjector(main_app, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        default=int(os.environ.get("FAULT_SERVER_PORT") or os.environ.get("MOTO_PORT") or 5000),
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=int(os.environ["FAULT_SEED"]) if os.environ.get("FAULT_SEED") else None,
        help="seed of the generator behind `probability` rules (or $FAULT_SEED)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"invalid port {args.port}")
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from werkzeug.serving import run_simple
    from moto.server import MotoRequestHandler

    def stop(signum: Any, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    run_simple(
        args.host,
        args.port,
        build_app(args.seed),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
