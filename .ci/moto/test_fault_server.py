"""Self-test of fault_server.py: moto behind the fault-injecting layer, driven through boto3.

Run with the venv that .ci/moto/start creates:
    "$PORTCULLIS_MOTO_VENV/bin/python" -m pytest -q .ci/moto/test_fault_server.py
The fixture starts its own server (this interpreter, a free port) and stops it by PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
# botocore reads "max_attempts" as the number of RETRIES (max_attempts=1 makes 2 calls);
# "total_max_attempts" counts the first call too.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def endpoint(tmp_path_factory: pytest.TempPathFactory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("fault") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fault_server.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/moto-api/", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fault_server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(autouse=True)
def clean(endpoint: str):
    assert requests.post(f"{endpoint}/moto-api/reset").ok
    assert requests.post(f"{endpoint}/_fault/reset").ok
    yield


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRY,
    )


@pytest.fixture
def sso(endpoint):
    return client(endpoint, "sso-admin")


@pytest.fixture
def ids(endpoint):
    return client(endpoint, "identitystore")


@pytest.fixture
def org(endpoint):
    return client(endpoint, "organizations")


def admin(endpoint: str, path: str, **body):
    r = requests.post(f"{endpoint}/_fault/{path}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def fault_log(endpoint: str, **params):
    r = requests.get(f"{endpoint}/_fault/log", params=params)
    assert r.status_code == 200
    return r.json()


@pytest.fixture
def world(sso, ids, org):
    """An organization with one account, a permission set and one Identity Store user."""
    org.create_organization(FeatureSet="ALL")
    account = org.create_account(AccountName="dev", Email="dev@example.com")["CreateAccountStatus"]["AccountId"]
    inst = sso.list_instances()["Instances"][0]
    ps = sso.create_permission_set(InstanceArn=inst["InstanceArn"], Name="Admin", SessionDuration="PT4H")
    user = ids.create_user(
        IdentityStoreId=inst["IdentityStoreId"],
        UserName="alice@example.com",
        DisplayName="Alice",
        Name={"GivenName": "Alice", "FamilyName": "Liddell"},
        Emails=[{"Value": "alice@example.com", "Primary": True}],
    )
    args = dict(
        InstanceArn=inst["InstanceArn"],
        TargetId=account,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=ps["PermissionSet"]["PermissionSetArn"],
        PrincipalType="USER",
        PrincipalId=user["UserId"],
    )
    return args


def assignments(sso, args) -> list:
    return sso.list_account_assignments(
        InstanceArn=args["InstanceArn"], AccountId=args["TargetId"], PermissionSetArn=args["PermissionSetArn"]
    )["AccountAssignments"]


def creation_status(sso, args, request_id):
    return sso.describe_account_assignment_creation_status(
        InstanceArn=args["InstanceArn"], AccountAssignmentCreationRequestId=request_id
    )["AccountAssignmentCreationStatus"]


def deletion_status(sso, args, request_id):
    return sso.describe_account_assignment_deletion_status(
        InstanceArn=args["InstanceArn"], AccountAssignmentDeletionRequestId=request_id
    )["AccountAssignmentDeletionStatus"]


# --------------------------------------------------------------- plain moto


def test_organization_accounts_and_ous(org):
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    eng = org.create_organizational_unit(ParentId=root, Name="Eng")["OrganizationalUnit"]["Id"]
    platform = org.create_organizational_unit(ParentId=eng, Name="Platform")["OrganizationalUnit"]["Id"]
    created = [
        org.create_account(AccountName=n, Email=f"{n}@example.com")["CreateAccountStatus"] for n in ("dev", "prod")
    ]
    assert all(c["State"] == "SUCCEEDED" for c in created)
    org.move_account(AccountId=created[1]["AccountId"], SourceParentId=root, DestinationParentId=platform)
    assert len(org.list_accounts()["Accounts"]) == 3  # the management account + 2
    assert [a["Id"] for a in org.list_accounts_for_parent(ParentId=platform)["Accounts"]] == [created[1]["AccountId"]]
    assert [o["Id"] for o in org.list_organizational_units_for_parent(ParentId=eng)["OrganizationalUnits"]] == [platform]


def test_instance_exists_before_any_other_call(sso):
    inst = sso.list_instances()["Instances"]
    assert len(inst) == 1
    assert inst[0]["InstanceArn"].startswith("arn:aws:sso:::instance/ssoins-")
    assert inst[0]["IdentityStoreId"].startswith("d-") and len(inst[0]["IdentityStoreId"]) == 12
    assert inst[0]["Status"] == "ACTIVE"


def test_assignment_happy_path(sso, world):
    created = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]
    assert created["Status"] == "SUCCEEDED"
    assert creation_status(sso, world, created["RequestId"])["Status"] == "SUCCEEDED"
    assert len(assignments(sso, world)) == 1
    deleted = sso.delete_account_assignment(**world)["AccountAssignmentDeletionStatus"]
    assert deleted["Status"] == "SUCCEEDED"
    assert deletion_status(sso, world, deleted["RequestId"])["Status"] == "SUCCEEDED"
    assert assignments(sso, world) == []


def test_moto_keeps_duplicate_assignments(sso, world):
    a = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    b = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    assert a != b
    assert len(assignments(sso, world)) == 2
    sso.delete_account_assignment(**world)
    assert len(assignments(sso, world)) == 1


# ------------------------------------------------------------------ errors


def test_throttling_n_times_then_success(endpoint, sso, world):
    armed = admin(
        endpoint, "arm", operation="CreateAccountAssignment", count=2, status=400,
        code="ThrottlingException", message="Rate exceeded",
    )
    assert armed["armed"]["remaining"] == 2
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            sso.create_account_assignment(**world)
        err = e.value.response
        assert err["Error"]["Code"] == "ThrottlingException"
        assert err["Error"]["Message"] == "Rate exceeded"
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ThrottlingException"
        assert err["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["Status"] == "SUCCEEDED"
    assert len(assignments(sso, world)) == 1  # rejected calls never reached moto
    statuses = [e["status"] for e in fault_log(endpoint, operation="CreateAccountAssignment")]
    assert statuses == [400, 400, 200]


def test_raw_error_body(endpoint):
    admin(endpoint, "arm", operation="GetUserId", code="ThrottlingException")
    r = requests.post(
        endpoint + "/",
        headers={"X-Amz-Target": "AWSIdentityStore.GetUserId", "Content-Type": "application/x-amz-json-1.1"},
        data=b"{}",
    )
    assert r.status_code == 400
    assert r.json() == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    assert r.headers["x-amzn-ErrorType"] == "ThrottlingException"
    assert r.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert r.headers["x-amzn-RequestId"]


def test_conflict(endpoint, sso, world):
    admin(endpoint, "arm", operation="DeleteAccountAssignment", count=1, status=400, code="ConflictException",
          message="An operation is in progress")
    sso.create_account_assignment(**world)
    with pytest.raises(ClientError) as e:
        sso.delete_account_assignment(**world)
    assert e.value.response["Error"]["Code"] == "ConflictException"
    assert e.value.response["Error"]["Message"] == "An operation is in progress"
    assert len(assignments(sso, world)) == 1
    sso.delete_account_assignment(**world)
    assert assignments(sso, world) == []


@pytest.mark.parametrize(
    "status,code", [(500, "InternalServerException"), (503, "ServiceUnavailable")]
)
def test_server_errors(endpoint, sso, status, code):
    admin(endpoint, "arm", operation="ListInstances", count=1, status=status, code=code)
    with pytest.raises(ClientError) as e:
        sso.list_instances()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert e.value.response["Error"]["Code"] == code
    assert len(sso.list_instances()["Instances"]) == 1


def test_status_or_code_alone_gets_defaults(endpoint, sso):
    assert admin(endpoint, "arm", operation="ListInstances", status=500)["armed"]["code"] == "InternalServerException"
    assert admin(endpoint, "arm", operation="ListInstances", code="ServiceUnavailable")["armed"]["status"] == 503
    with pytest.raises(ClientError) as e1:
        sso.list_instances()
    with pytest.raises(ClientError) as e2:
        sso.list_instances()
    assert [e1.value.response["Error"]["Code"], e2.value.response["Error"]["Code"]] == [
        "InternalServerException", "ServiceUnavailable"]
    sso.list_instances()


def test_armed_faults_apply_in_order(endpoint, sso, world):
    admin(endpoint, "arm", operation="CreateAccountAssignment", code="ThrottlingException")
    admin(endpoint, "arm", operation="CreateAccountAssignment", code="ConflictException")
    codes = []
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            sso.create_account_assignment(**world)
        codes.append(e.value.response["Error"]["Code"])
    assert codes == ["ThrottlingException", "ConflictException"]
    sso.create_account_assignment(**world)


def test_wildcard_operation(endpoint, org, ids):
    admin(endpoint, "arm", operation="*", count=1, code="ThrottlingException")
    with pytest.raises(ClientError) as e:
        org.create_organization(FeatureSet="ALL")
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    org.create_organization(FeatureSet="ALL")


def test_always_error_until_disarmed(endpoint, sso):
    admin(endpoint, "arm", operation="ListPermissionSets", always=True, status=500)
    inst = sso.list_instances()["Instances"][0]["InstanceArn"]
    for _ in range(3):
        with pytest.raises(ClientError):
            sso.list_permission_sets(InstanceArn=inst)
    assert admin(endpoint, "disarm", operation="ListPermissionSets") == {"removed": 1}
    sso.list_permission_sets(InstanceArn=inst)


def _error_codes(sso, calls: int) -> list:
    """Calls ListInstances `calls` times; the injected error code of each (None: no fault)."""
    codes = []
    for _ in range(calls):
        try:
            sso.list_instances()
            codes.append(None)
        except ClientError as e:
            codes.append(e.response["Error"]["Code"])
    return codes


def test_probabilistic_faults_share_one_draw_and_replay_with_a_seed(endpoint, sso):
    def run() -> list:
        admin(endpoint, "seed", seed=7)
        admin(endpoint, "arm", operation="*", always=True, probability=0.3, code="ThrottlingException")
        admin(endpoint, "arm", operation="*", always=True, probability=0.1, code="ConflictException")
        codes = _error_codes(sso, 400)
        admin(endpoint, "reset")
        return codes

    first = run()
    throttled, conflicts = first.count("ThrottlingException"), first.count("ConflictException")
    # 400 calls at 30 % and 10 %: far outside these only if the bands were wrong
    # (e.g. two independent draws would give ~7 % conflicts).
    assert 90 <= throttled <= 150, throttled
    assert 22 <= conflicts <= 60, conflicts
    assert throttled + conflicts + first.count(None) == 400
    # The same seed and the same calls: the same faults, call for call.
    assert run() == first
    # Another seed: another sequence.
    admin(endpoint, "seed", seed=8)
    admin(endpoint, "arm", operation="*", always=True, probability=0.3, code="ThrottlingException")
    assert _error_codes(sso, 100) != [c if c == "ThrottlingException" else None for c in first[:100]]


def test_probabilistic_counted_rule_is_consumed_only_when_it_fires(endpoint, sso):
    admin(endpoint, "seed", seed=1)
    armed = admin(endpoint, "arm", operation="ListInstances", count=3, probability=0.5, code="ThrottlingException")
    assert armed["armed"]["probability"] == 0.5
    codes = _error_codes(sso, 40)
    assert codes.count("ThrottlingException") == 3
    # Calls it did not fire on went through to moto and left the rule armed.
    assert codes[:3] != ["ThrottlingException"] * 3
    assert requests.get(f"{endpoint}/_fault/rules").json() == []
    log = fault_log(endpoint, operation="ListInstances")
    assert [e["fault"] for e in log].count("error") == 3


def test_probabilistic_latency(endpoint, sso):
    admin(endpoint, "seed", seed=3)
    admin(endpoint, "arm", operation="ListInstances", always=True, probability=0.5, delay_ms=30)
    _error_codes(sso, 40)
    slow = [e for e in fault_log(endpoint, operation="ListInstances") if e["duration_ms"] >= 30]
    assert 8 <= len(slow) <= 32, len(slow)


def test_probability_must_be_in_range(endpoint):
    for bad in (0, -0.1, 1.5, "half", True):
        r = requests.post(
            f"{endpoint}/_fault/arm",
            json={"operation": "X", "always": True, "probability": bad, "code": "ThrottlingException"},
        )
        assert r.status_code == 400, bad
    assert requests.post(f"{endpoint}/_fault/seed", json={"seed": "x"}).status_code == 400
    assert admin(endpoint, "seed", seed=None) == {"seed": None}
    assert requests.get(f"{endpoint}/_fault/rules").json() == []


def test_concurrent_calls_consume_exactly_n(endpoint, sso):
    admin(endpoint, "arm", operation="ListInstances", count=5, code="ThrottlingException")
    outcomes: list[str] = []
    lock = threading.Lock()

    def call():
        c = client(endpoint, "sso-admin")
        try:
            c.list_instances()
            r = "ok"
        except ClientError as e:
            r = e.response["Error"]["Code"]
        with lock:
            outcomes.append(r)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ThrottlingException") == 5
    assert outcomes.count("ok") == 11


# ----------------------------------------------------------------- latency


def test_delay_next_call(endpoint, sso):
    admin(endpoint, "arm", operation="ListInstances", count=1, delay_ms=1000)
    t0 = time.monotonic()
    sso.list_instances()
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    sso.list_instances()
    fast = time.monotonic() - t0
    assert slow >= 1.0
    assert fast < 0.9
    entries = fault_log(endpoint, operation="ListInstances")
    assert [e["fault"] for e in entries] == ["delay", None]
    assert entries[0]["duration_ms"] >= 1000


def test_delay_then_error(endpoint, sso):
    admin(endpoint, "arm", operation="ListInstances", delay_ms=300, status=503)
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        sso.list_instances()
    assert time.monotonic() - t0 >= 0.3
    assert e.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_always_latency_stacks_with_counted_faults(endpoint, sso, world):
    for _ in range(3):
        sso.create_account_assignment(**world)
    admin(endpoint, "arm", operation="DeleteAccountAssignment", always=True, delay_ms=50)
    admin(endpoint, "arm", operation="DeleteAccountAssignment", count=1, code="ThrottlingException")
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        sso.delete_account_assignment(**world)
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    assert time.monotonic() - t0 >= 0.05
    for _ in range(3):
        t0 = time.monotonic()
        sso.delete_account_assignment(**world)
        assert time.monotonic() - t0 >= 0.05
    assert assignments(sso, world) == []
    log = fault_log(endpoint, operation="DeleteAccountAssignment")
    assert [(e["status"], e["fault"]) for e in log] == [(400, "error")] + [(200, None)] * 3
    assert all(e["duration_ms"] >= 50 for e in log)
    # The latency rule stays armed until disarmed or reset.
    rules = requests.get(f"{endpoint}/_fault/rules").json()
    assert [(r["kind"], r["always"], r["delay_ms"]) for r in rules] == [("delay", True, 50)]


# ---------------------------------------------------------- status rewrites


def test_in_progress_then_succeeded(endpoint, sso, world):
    request_id = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    admin(endpoint, "in_progress", operation="DescribeAccountAssignmentCreationStatus", count=3)
    seen = [creation_status(sso, world, request_id)["Status"] for _ in range(4)]
    assert seen == ["IN_PROGRESS"] * 3 + ["SUCCEEDED"]


def test_deletion_in_progress_then_succeeded(endpoint, sso, world):
    sso.create_account_assignment(**world)
    request_id = sso.delete_account_assignment(**world)["AccountAssignmentDeletionStatus"]["RequestId"]
    admin(endpoint, "in_progress", operation="DescribeAccountAssignmentDeletionStatus", count=2)
    seen = [deletion_status(sso, world, request_id)["Status"] for _ in range(3)]
    assert seen == ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"]


def test_create_itself_can_answer_in_progress(endpoint, sso, world):
    admin(endpoint, "in_progress", operation="CreateAccountAssignment")
    created = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]
    assert created["Status"] == "IN_PROGRESS"
    assert creation_status(sso, world, created["RequestId"])["Status"] == "SUCCEEDED"


def test_creation_failed_with_reason(endpoint, sso, world):
    reason = "Quota exceeded for roles in account 123456789012"
    request_id = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    admin(endpoint, "in_progress", operation="DescribeAccountAssignmentCreationStatus", count=1)
    admin(endpoint, "fail", operation="DescribeAccountAssignmentCreationStatus", count=1, reason=reason)
    first = creation_status(sso, world, request_id)
    failed = creation_status(sso, world, request_id)
    assert first["Status"] == "IN_PROGRESS"
    assert failed["Status"] == "FAILED"
    assert failed["FailureReason"] == reason
    # As in AWS: a failed creation leaves no assignment, and the request id keeps answering FAILED.
    assert assignments(sso, world) == []
    again = creation_status(sso, world, request_id)
    assert (again["Status"], again["FailureReason"]) == ("FAILED", reason)
    assert fault_log(endpoint, operation="DescribeAccountAssignmentCreationStatus")[-1]["fault"] == "sticky_failed"


def test_creation_failed_without_revert_keeps_moto_state(endpoint, sso, world):
    request_id = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    admin(endpoint, "fail", operation="DescribeAccountAssignmentCreationStatus", reason="x", revert=False)
    assert creation_status(sso, world, request_id)["Status"] == "FAILED"
    assert len(assignments(sso, world)) == 1


def test_deletion_failed_restores_assignment(endpoint, sso, world):
    sso.create_account_assignment(**world)
    request_id = sso.delete_account_assignment(**world)["AccountAssignmentDeletionStatus"]["RequestId"]
    assert assignments(sso, world) == []
    admin(endpoint, "fail", operation="DescribeAccountAssignmentDeletionStatus", reason="Internal failure")
    failed = deletion_status(sso, world, request_id)
    assert (failed["Status"], failed["FailureReason"]) == ("FAILED", "Internal failure")
    assert len(assignments(sso, world)) == 1


def test_status_rewrite_waits_for_a_real_status(endpoint, sso, world):
    admin(endpoint, "in_progress", operation="DescribeAccountAssignmentCreationStatus", count=1)
    with pytest.raises(ClientError) as e:
        creation_status(sso, world, "00000000-0000-0000-0000-000000000000")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    rules = requests.get(f"{endpoint}/_fault/rules").json()
    assert [(r["kind"], r["remaining"]) for r in rules] == [("in_progress", 1)]
    request_id = sso.create_account_assignment(**world)["AccountAssignmentCreationStatus"]["RequestId"]
    assert creation_status(sso, world, request_id)["Status"] == "IN_PROGRESS"


# ---------------------------------------------------------- identity store


def test_identity_store_users(ids, sso):
    store = sso.list_instances()["Instances"][0]["IdentityStoreId"]
    user = ids.create_user(
        IdentityStoreId=store, UserName="bob@example.com", DisplayName="Bob",
        Name={"GivenName": "Bob", "FamilyName": "B"}, Emails=[{"Value": "bob.b@example.com", "Primary": True}],
    )
    by_name = ids.get_user_id(
        IdentityStoreId=store,
        AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "bob@example.com"}},
    )
    by_email = ids.get_user_id(
        IdentityStoreId=store,
        AlternateIdentifier={"UniqueAttribute": {"AttributePath": "emails.value", "AttributeValue": "bob.b@example.com"}},
    )
    assert by_name["UserId"] == by_email["UserId"] == user["UserId"]
    with pytest.raises(ClientError) as e:
        ids.get_user_id(
            IdentityStoreId=store,
            AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "nobody"}},
        )
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_identity_store_fault(endpoint, ids):
    admin(endpoint, "arm", operation="GetUserId", count=1, code="ThrottlingException")
    with pytest.raises(ClientError) as e:
        ids.get_user_id(
            IdentityStoreId="d-1234567890",
            AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "x"}},
        )
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    assert fault_log(endpoint)[-1]["target"] == "AWSIdentityStore.GetUserId"


# ------------------------------------------------------------- log / reset


def test_log_records_calls(endpoint, sso, org):
    t_start = time.time()
    org.create_organization(FeatureSet="ALL")
    admin(endpoint, "arm", operation="ListInstances", code="ThrottlingException")
    with pytest.raises(ClientError):
        sso.list_instances()
    sso.list_instances()
    log = fault_log(endpoint)
    ops = [e["operation"] for e in log if e["operation"]]
    assert ops == ["CreateOrganization", "ListInstances", "ListInstances"]
    aws = [e for e in log if e["operation"]]
    assert aws[0]["target"] == "AWSOrganizationsV20161128.CreateOrganization"
    assert aws[0]["request"] == {"FeatureSet": "ALL"}
    assert [(e["status"], e["fault"], e["error_code"]) for e in aws[1:]] == [
        (400, "error", "ThrottlingException"), (200, None, None)]
    assert all(t_start - 1 <= e["time"] <= time.time() for e in aws)
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    since = aws[1]["seq"]
    assert [e["seq"] for e in fault_log(endpoint, since=since)] == [aws[2]["seq"]]
    assert len(fault_log(endpoint, operation="ListInstances")) == 2


def test_reset_clears_faults_and_log(endpoint, sso):
    admin(endpoint, "arm", operation="ListInstances", count=5, code="ThrottlingException")
    with pytest.raises(ClientError):
        sso.list_instances()
    assert fault_log(endpoint)
    assert admin(endpoint, "reset") == {"reset": True}
    assert fault_log(endpoint) == []
    assert requests.get(f"{endpoint}/_fault/rules").json() == []
    sso.list_instances()


def test_admin_api_rejects_bad_requests(endpoint):
    assert requests.post(f"{endpoint}/_fault/arm", data=b"not json").status_code == 400
    assert requests.post(f"{endpoint}/_fault/arm", json={"count": 1, "code": "X"}).status_code == 400
    assert requests.post(f"{endpoint}/_fault/arm", json={"operation": "X", "count": 0, "code": "X"}).status_code == 400
    assert requests.post(f"{endpoint}/_fault/arm", json={"operation": "X"}).status_code == 400
    assert requests.post(f"{endpoint}/_fault/nope", json={}).status_code == 404
    assert requests.get(f"{endpoint}/_fault/arm").status_code == 405
    assert requests.get(f"{endpoint}/_fault/rules").json() == []


def test_moto_api_passes_through(endpoint, sso):
    requests.post(f"{endpoint}/moto-api/seed?a=42")
    first = sso.list_instances()["Instances"][0]["InstanceArn"]
    requests.post(f"{endpoint}/moto-api/reset")
    requests.post(f"{endpoint}/moto-api/seed?a=42")
    assert sso.list_instances()["Instances"][0]["InstanceArn"] == first
    assert requests.get(f"{endpoint}/moto-api/data.json").ok


def test_rest_operations_are_named_so_faults_reach_them(endpoint):
    # EventBridge Scheduler is a REST API (no X-Amz-Target): its calls are still named,
    # logged and armable by operation.
    sched = client(endpoint, "scheduler")
    sched.create_schedule_group(Name="faults")
    schedule = dict(
        Name="s1", GroupName="faults", ScheduleExpression="at(2030-01-01T00:00:00)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:scheduler:::aws-sdk:ssoadmin:deleteAccountAssignment",
                "RoleArn": "arn:aws:iam::123456789012:role/backstop", "Input": "{}"},
    )
    admin(endpoint, "arm", operation="CreateSchedule", count=1, status=400,
          code="ThrottlingException", message="Rate exceeded")
    with pytest.raises(ClientError) as e:
        sched.create_schedule(**schedule)
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    sched.create_schedule(**schedule)
    assert sched.get_schedule(Name="s1", GroupName="faults")["Name"] == "s1"
    sched.delete_schedule(Name="s1", GroupName="faults")
    ops = [e["operation"] for e in fault_log(endpoint) if e["operation"] and "Schedule" in e["operation"]]
    assert ops == ["CreateScheduleGroup", "CreateSchedule", "CreateSchedule", "GetSchedule", "DeleteSchedule"]
