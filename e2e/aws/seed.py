#!/usr/bin/env python3
"""Seeds the moto server the end-to-end suite's `portcullis serve` grants access in, and
writes that server's configuration file.

moto gets an IAM Identity Center instance (moto's own), the four fixture people of
e2e/oidc/accounts.json in Identity Store, an organization (Root > Workloads > Prod, with
`production` in Prod and `staging` in Workloads) and a permission set. The configuration
declares the `prod-readonly` entitlement on the Prod OU, which the catalog sync expands
to the production account.

    python seed.py --endpoint http://127.0.0.1:3103 --config /tmp/serve.toml
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import urllib.request

import boto3

# moto's permission set ARNs are not shaped like AWS's (which the portal insists on), and
# moto does not check the ARN of an assignment: the entitlement names a well-formed one.
PERMISSION_SET_ARN = "arn:aws:sso:::permissionSet/ssoins-e2e0000000000000/ps-e2e0000000000001"


def wait_for(endpoint: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/_fault/", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"moto did not answer at {endpoint}")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--config", required=True)
    args = ap.parse_args()
    wait_for(args.endpoint)

    def client(service: str):
        return boto3.client(
            service,
            endpoint_url=args.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    sso, identity, orgs = client("sso-admin"), client("identitystore"), client("organizations")
    instance = sso.list_instances()["Instances"][0]
    store_id = instance["IdentityStoreId"]
    accounts = json.loads((pathlib.Path(__file__).parent.parent / "oidc" / "accounts.json").read_text())
    for person in accounts:
        given, _, family = person["name"].partition(" ")
        identity.create_user(
            IdentityStoreId=store_id,
            UserName=person["email"],
            DisplayName=person["name"],
            Name={"GivenName": given, "FamilyName": family or given},
        )

    orgs.create_organization(FeatureSet="ALL")
    root = orgs.list_roots()["Roots"][0]["Id"]
    workloads = orgs.create_organizational_unit(ParentId=root, Name="Workloads")["OrganizationalUnit"]["Id"]
    prod = orgs.create_organizational_unit(ParentId=workloads, Name="Prod")["OrganizationalUnit"]["Id"]
    for name, ou in (("production", prod), ("staging", workloads)):
        account = orgs.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]["AccountId"]
        orgs.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
    sso.create_permission_set(
        InstanceArn=instance["InstanceArn"],
        Name="ReadOnlyAccess",
        Description="Read everything, change nothing",
        SessionDuration="PT4H",
    )

    pathlib.Path(args.config).write_text(
        f"""# Written by e2e/aws/seed.py for the end-to-end suite's `portcullis serve`.
[aws]
provisioner = "sso-admin"
region = "us-east-1"
endpoint_url = "{args.endpoint}"
call_timeout_secs = 5

[[entitlements]]
id = "prod-readonly"
name = "Production read-only"
description = "Read-only access to production, to investigate incidents."
targets = [{{ kind = "ou", ou_id = "{prod}", permission_set_arn = "{PERMISSION_SET_ARN}" }}]
[entitlements.policy]
eligible_groups = ["engineering"]
approvers = {{ manager = true }}
max_duration_secs = 28800
default_duration_secs = 3600
"""
    )
    print(f"seeded moto at {args.endpoint}: Prod OU {prod}; configuration in {args.config}", flush=True)


if __name__ == "__main__":
    main()
