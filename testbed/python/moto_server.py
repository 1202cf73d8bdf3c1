"""moto (the maintained AWS emulator) for the test bed: Route 53, STS and IAM in one
process, with IAM authentication on, so a wrong secret key is refused as AWS refuses it.

Usage: moto_server.py PORT. Starts moto on 127.0.0.1:PORT, makes the test bed's
accounts with boto3 (the first SETUP_CALLS requests, which moto lets through unsigned),
prints one JSON line with what tests need, and serves until killed.

Four fixes to moto 5.2.5, at the lines marked FIX. Under IAM authentication it checks
the signature of a bodiless request (every Route 53 GET) against a payload made of the
request's headers instead of the empty body, so it refuses good signatures. The fix
checks GET, HEAD and DELETE requests without a body against an empty payload. It
demands a signature on STS AssumeRoleWithWebIdentity, which AWS takes unsigned (IRSA).
An ACM re-import into an ARN drops the certificate's tags and users, which ACM keeps.
And it deletes an ACM certificate a load balancer uses, which ACM refuses.
(Two more differences from ACM are the mirror's: ACM's serial format, and its refusal
of tags on a re-import.)
"""

import json
import os
import sys
import threading

# Every boto3 call below is one action; moto authenticates all actions after these.
SETUP_CALLS = 21
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_CALLS)

import boto3  # noqa: E402
import moto.acm.models as acm_models  # noqa: E402
import moto.iam.access_control as access_control  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.core.exceptions import AWSError  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _create_aws_request_fixed(self):
    request = _create_aws_request(self)
    # FIX: a bodiless request (GET, DELETE) is signed over an empty payload. (A query
    # protocol POST, STS's, keeps moto's way: its form is parsed into the data.)
    if self._method in ("GET", "HEAD", "DELETE") and not self._body:
        request = AWSRequest(
            method=request.method, url=request.url, data=b"", headers=request.headers
        )
        request.context["timestamp"] = request.headers.get("X-Amz-Date", "")
    return request


access_control.IAMRequestBase._create_aws_request = _create_aws_request_fixed

_authenticate = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate_fixed(self, iam_request_cls, resource="*"):
    # FIX 2: STS's web identity and SAML calls are unsigned in AWS (the token is the
    # proof); moto demands a signature and fails with a KeyError.
    if self._get_action() in ("AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
        return None
    return _authenticate(self, iam_request_cls, resource)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate_fixed

_import_certificate = acm_models.AWSCertificateManagerBackend.import_certificate


def _import_certificate_fixed(self, certificate, private_key, chain, arn, tags):
    # FIX 3: a re-import keeps the certificate's tags and the load balancers using it
    # (moto makes a new bundle without).
    before = self._certificates.get(arn) if arn else None
    kept = dict(before.tags) if before else {}
    users = list(before.in_use_by) if before else []
    new_arn = _import_certificate(self, certificate, private_key, chain, arn, tags)
    if kept:
        self.add_tags_to_certificate(new_arn, [{"Key": k, "Value": v} for k, v in kept.items()])
    self._certificates[new_arn].in_use_by.extend(users)
    return new_arn


acm_models.AWSCertificateManagerBackend.import_certificate = _import_certificate_fixed


class ResourceInUse(AWSError):
    TYPE = "ResourceInUseException"


_delete_certificate = acm_models.AWSCertificateManagerBackend.delete_certificate


def _delete_certificate_fixed(self, arn):
    # FIX 4: ACM refuses to delete a certificate a load balancer uses (moto deletes it).
    cert = self._certificates.get(arn)
    if cert is not None and cert.in_use_by:
        raise ResourceInUse(message=f"Certificate {arn} in account {self.account_id} is in use.")
    return _delete_certificate(self, arn)


acm_models.AWSCertificateManagerBackend.delete_certificate = _delete_certificate_fixed

ALLOW_ROUTE53 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "route53:*", "Resource": "*"}],
    }
)
ALLOW_ASSUME = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
    }
)
ALLOW_ACM = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "acm:ImportCertificate",
                    "acm:DescribeCertificate",
                    "acm:AddTagsToCertificate",
                    "acm:DeleteCertificate",
                ],
                "Resource": "*",
            }
        ],
    }
)
TRUST_ANYONE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*", "Federated": "*"},
                "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"],
            }
        ],
    }
)


def main():
    port = int(sys.argv[1])
    zones = sys.argv[2:]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    setup = dict(
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIASETUPSETUPSETUP0",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **setup)
    # 1-3: a user allowed to change Route 53.
    iam.create_user(UserName="caas-dns")
    dns = iam.create_access_key(UserName="caas-dns")["AccessKey"]
    iam.put_user_policy(UserName="caas-dns", PolicyName="dns", PolicyDocument=ALLOW_ROUTE53)
    # 4-6: a user allowed only to assume roles (route53.role).
    iam.create_user(UserName="caas-assumer")
    assumer = iam.create_access_key(UserName="caas-assumer")["AccessKey"]
    iam.put_user_policy(UserName="caas-assumer", PolicyName="assume", PolicyDocument=ALLOW_ASSUME)
    # 7-8: the role IRSA, Pod Identity and route53.role use.
    role = iam.create_role(RoleName="caas-dns", AssumeRolePolicyDocument=TRUST_ANYONE)["Role"]
    iam.put_role_policy(RoleName="caas-dns", PolicyName="dns", PolicyDocument=ALLOW_ROUTE53)
    # 9: what an EKS Pod Identity agent hands out: the role's session credentials.
    sts = boto3.client("sts", **setup)
    pod = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="pod-identity", DurationSeconds=43200)[
        "Credentials"
    ]
    # 10-12: a user allowed to import certificates into ACM (and read them back).
    iam.create_user(UserName="caas-acm")
    acm = iam.create_access_key(UserName="caas-acm")["AccessKey"]
    iam.put_user_policy(UserName="caas-acm", PolicyName="acm", PolicyDocument=ALLOW_ACM)
    # 13-14: a user with valid keys and no rights at all.
    iam.create_user(UserName="caas-nothing")
    nothing = iam.create_access_key(UserName="caas-nothing")["AccessKey"]
    # 15: tests read ACM back as this user (ListTagsForCertificate too).
    iam.put_user_policy(
        UserName="caas-acm",
        PolicyName="read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["acm:ListTagsForCertificate", "acm:ListCertificates"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    # 16: the role may import into ACM too (IRSA / Pod Identity deploy targets).
    iam.put_role_policy(RoleName="caas-dns", PolicyName="acm", PolicyDocument=ALLOW_ACM)
    # 17-19: a user allowed to make load balancers (tests put an ACM certificate in use).
    iam.create_user(UserName="caas-elb")
    elb = iam.create_access_key(UserName="caas-elb")["AccessKey"]
    allow_elb = {"Effect": "Allow", "Action": "elasticloadbalancing:*", "Resource": "*"}
    iam.put_user_policy(
        UserName="caas-elb",
        PolicyName="elb",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow_elb]}),
    )
    # 20-21: the hosted zones.
    r53 = boto3.client("route53", **setup)
    zone_ids = {}
    for i, zone in enumerate((zones + ["unused-1.test", "unused-2.test"])[:2]):
        z = r53.create_hosted_zone(Name=zone, CallerReference=f"caas-{i}")
        zone_ids[zone] = z["HostedZone"]["Id"].split("/")[-1]
    print(
        json.dumps(
            {
                "url": url,
                "dns_user": {"id": dns["AccessKeyId"], "secret": dns["SecretAccessKey"]},
                "assumer": {"id": assumer["AccessKeyId"], "secret": assumer["SecretAccessKey"]},
                "acm_user": {"id": acm["AccessKeyId"], "secret": acm["SecretAccessKey"]},
                "nothing_user": {"id": nothing["AccessKeyId"], "secret": nothing["SecretAccessKey"]},
                "elb_user": {"id": elb["AccessKeyId"], "secret": elb["SecretAccessKey"]},
                "role_arn": role["Arn"],
                "pod_identity": {
                    "AccessKeyId": pod["AccessKeyId"],
                    "SecretAccessKey": pod["SecretAccessKey"],
                    "Token": pod["SessionToken"],
                    "Expiration": pod["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "zones": zone_ids,
            }
        ),
        flush=True,
    )
    threading.Event().wait()


if __name__ == "__main__":
    main()
