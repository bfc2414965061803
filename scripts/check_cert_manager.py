#!/usr/bin/env python3
"""JSON schemas of the cert-manager kinds the manifests use (cert-manager.io/v1 Certificate,
Issuer, ClusterIssuer), written by hand from cert-manager's CRDs (deploy/crds in its
repository, v1.18) and its webhook's rules.

They cover every spec field of the Certificate CRD, with its types and enums, and the
selfSigned and ca issuer types in full, and are strict (additionalProperties: false) where the
API server is: the CRDs are structural, so an unknown field is pruned or, with kubectl's
default field validation, refused. The webhook rules included: a Certificate names at least
one subject (commonName, dnsNames, uris, ...) and does not set both of an exclusive pair
(renewBefore/renewBeforePercentage, literalSubject/commonName or subject); an issuer has
exactly one issuer type; a CA issuer names its Secret. Solver and Vault/Venafi
details are left open (objects): the manifests use the selfSigned and ca issuers only.

scripts/check_deploy.sh imports SCHEMAS; `check_cert_manager.py RENDERED.yaml` validates the
cert-manager documents of a rendered overlay on its own, and `--selftest RENDERED.yaml` also
checks that broken variants of them (unknown fields, bad enums, two issuer types...) fail.
"""

import sys

# Go time.Duration, as cert-manager parses duration / renewBefore.
DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
META = {"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                       "namespace": {"type": "string"}, "labels": LABELS, "annotations": LABELS}}
KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment",
              "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
              "decipher only", "any", "server auth", "client auth", "code signing",
              "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
              "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
ISSUER_REF = {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": {"name": {"type": "string", "minLength": 1},
                             "kind": {"type": "string"}, "group": {"type": "string"}}}
SECRET_KEY_SELECTOR = {"type": "object", "required": ["name"], "additionalProperties": False,
                       "properties": {"name": {"type": "string"}, "key": {"type": "string"}}}

CERTIFICATE_SPEC = {
    "type": "object", "additionalProperties": False,
    "required": ["secretName", "issuerRef"],
    # cert-manager's webhook: "at least one of commonName, dnsNames, uriSANs, ipAddresses,
    # emailSANs, otherNames or literalSubject must be set".
    "anyOf": [{"required": [k]} for k in ("commonName", "dnsNames", "uris", "ipAddresses",
                                          "emailAddresses", "otherNames", "literalSubject")],
    # Mutually exclusive pairs (the CRD's descriptions, enforced by the webhook).
    "not": {"anyOf": [{"required": ["literalSubject", "commonName"]},
                      {"required": ["literalSubject", "subject"]},
                      {"required": ["renewBefore", "renewBeforePercentage"]}]},
    "properties": {
        "secretName": {"type": "string", "minLength": 1},
        "issuerRef": ISSUER_REF,
        "commonName": {"type": "string", "maxLength": 64},
        "literalSubject": {"type": "string"},
        "dnsNames": STRINGS,
        "uris": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z][a-z0-9+.-]*://"}},
        "ipAddresses": STRINGS,
        "emailAddresses": STRINGS,
        "otherNames": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"oid": {"type": "string"}, "utf8Value": {"type": "string"}}}},
        "isCA": {"type": "boolean"},
        "duration": DURATION,
        "renewBefore": DURATION,
        "renewBeforePercentage": {"type": "integer", "minimum": 1, "maximum": 99},
        "revisionHistoryLimit": {"type": "integer", "minimum": 1},
        "usages": {"type": "array", "items": {"enum": KEY_USAGES}},
        "encodeUsagesInRequest": {"type": "boolean"},
        "subject": {"type": "object", "additionalProperties": False, "properties": {
            k: STRINGS for k in ("organizations", "countries", "organizationalUnits", "localities",
                                 "provinces", "streetAddresses", "postalCodes")} | {
            "serialNumber": {"type": "string"}}},
        "privateKey": {"type": "object", "additionalProperties": False, "properties": {
            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
            "encoding": {"enum": ["PKCS1", "PKCS8"]},
            "size": {"type": "integer"},
            "rotationPolicy": {"enum": ["Never", "Always"]}},
            # The sizes cert-manager accepts per algorithm.
            "allOf": [
                {"if": {"properties": {"algorithm": {"const": "ECDSA"}}, "required": ["algorithm"]},
                 "then": {"properties": {"size": {"enum": [256, 384, 521]}}}},
                {"if": {"properties": {"algorithm": {"const": "RSA"}}, "required": ["algorithm"]},
                 "then": {"properties": {"size": {"enum": [2048, 4096, 8192]}}}}]},
        "signatureAlgorithm": {"enum": ["SHA256WithRSA", "SHA384WithRSA", "SHA512WithRSA",
                                        "ECDSAWithSHA256", "ECDSAWithSHA384", "ECDSAWithSHA512",
                                        "PureEd25519"]},
        "secretTemplate": {"type": "object", "additionalProperties": False,
                           "properties": {"labels": LABELS, "annotations": LABELS}},
        "keystores": {"type": "object", "additionalProperties": False, "properties": {
            k: {"type": "object", "required": ["create"], "properties": {
                "create": {"type": "boolean"}, "passwordSecretRef": SECRET_KEY_SELECTOR,
                "password": {"type": "string"}, "alias": {"type": "string"},
                "profile": {"type": "string"}}} for k in ("jks", "pkcs12")}},
        "additionalOutputFormats": {"type": "array", "items": {
            "type": "object", "required": ["type"], "additionalProperties": False,
            "properties": {"type": {"enum": ["DER", "CombinedPEM"]}}}},
        "nameConstraints": {"type": "object"},
    },
}

ISSUER_TYPES = ("selfSigned", "ca", "acme", "vault", "venafi")
ISSUER_SPEC = {
    "type": "object", "additionalProperties": False,
    # The webhook: exactly one issuer type.
    "oneOf": [{"required": [t]} for t in ISSUER_TYPES],
    "properties": {
        "selfSigned": {"type": "object", "additionalProperties": False, "properties": {
            "crlDistributionPoints": STRINGS}},
        "ca": {"type": "object", "required": ["secretName"], "additionalProperties": False,
               "properties": {"secretName": {"type": "string", "minLength": 1},
                              "crlDistributionPoints": STRINGS, "ocspServers": STRINGS,
                              "issuingCertificateURLs": STRINGS}},
        "acme": {"type": "object", "required": ["server", "privateKeySecretRef"], "properties": {
            "server": {"type": "string"}, "email": {"type": "string"},
            "privateKeySecretRef": SECRET_KEY_SELECTOR, "solvers": {"type": "array"}}},
        "vault": {"type": "object", "required": ["server", "path", "auth"]},
        "venafi": {"type": "object", "required": ["zone"]},
    },
}


def _kind(spec):
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "additionalProperties": False,
            "properties": {"apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"type": "string"},
                           "metadata": META, "spec": spec, "status": {"type": "object"}}}


SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): _kind(CERTIFICATE_SPEC),
    ("cert-manager.io/v1", "Issuer"): _kind(ISSUER_SPEC),
    ("cert-manager.io/v1", "ClusterIssuer"): _kind(ISSUER_SPEC),
}


def problems(doc):
    import jsonschema

    schema = SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return []
    return ["%s/%s: %s: %s" % (doc["kind"], doc["metadata"].get("name"),
                               ".".join(map(str, e.absolute_path)), e.message)
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]


# Mistakes the API server or cert-manager's webhook refuses; the schemas must refuse them too.
MUTATIONS = {
    "an unknown Certificate field": ("Certificate", lambda s: s.update({"dnsName": ["x"]})),
    "a misspelt privateKey field": ("Certificate", lambda s: s["privateKey"].update({"rotation": "Always"})),
    "an unknown key usage": ("Certificate", lambda s: s.update({"usages": ["server-auth"]})),
    "a duration in days": ("Certificate", lambda s: s.update({"duration": "90d"})),
    "an ECDSA key of 2048 bits": ("Certificate", lambda s: s["privateKey"].update({"size": 2048})),
    "no secretName": ("Certificate", lambda s: s.pop("secretName")),
    "renewBefore and renewBeforePercentage": ("Certificate", lambda s: s.update({"renewBeforePercentage": 30})),
    "an unknown signature algorithm": ("Certificate", lambda s: s.update({"signatureAlgorithm": "SHA1WithRSA"})),
    "no subject at all": ("Certificate", lambda s: [s.pop(k, None) for k in ("commonName", "dnsNames", "uris",
                                                                           "ipAddresses")]),
    "an issuerRef without name": ("Certificate", lambda s: s["issuerRef"].pop("name")),
    "two issuer types": ("Issuer", lambda s: s.update({"selfSigned": {}, "ca": {"secretName": "x"}})),
    "no issuer type": ("Issuer", lambda s: s.clear()),
    "a CA issuer without its Secret": ("Issuer", lambda s: s.clear() or s.update({"ca": {}})),
}


def selftest(path):
    import copy

    import yaml

    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    bad = [p for d in docs for p in problems(d)]
    for kind in ("Certificate", "Issuer"):
        if not any(d["kind"] == kind for d in docs):
            bad.append("no %s in %s" % (kind, path))
    for what, (kind, mutate) in MUTATIONS.items():
        doc = copy.deepcopy(next(d for d in docs if d["kind"] == kind and
                                 (kind != "Certificate" or "privateKey" in d["spec"])))
        mutate(doc["spec"])
        if not problems(doc):
            bad.append("not refused: " + what)
    for b in bad:
        print("check_cert_manager.py: " + b, file=sys.stderr)
    if not bad:
        print("check_cert_manager.py: the render validates and all %d broken variants are refused"
              % len(MUTATIONS))
    return 1 if bad else 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--selftest":
        return selftest(argv[1])
    import yaml

    with open(argv[0]) as f:
        bad = [p for d in yaml.safe_load_all(f) if d for p in problems(d)]
    for b in bad:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
