"""Schemathesis hooks for tests/contract/run.py.

1. A client sends a *fresh* Idempotency-Key with every new request. Schemathesis draws
the header from the document's pattern and so repeats short keys ("0", "!") across different
requests, which the server answers, as the document says and the IETF Idempotency-Key draft
asks, with 422 `idempotency_key_reused`. That answer is right, but the document cannot say "a
key is unique per request", so the fuzzer would take it for a valid request refused. A key that
fits the pattern is therefore made unique (same charset, within 255 characters); a key that does
not fit it is sent as generated, and must still be refused with 400. Reuse itself is tested in
tests/api/idempotency.rs.

2. A request that fits the document may still break a rule about the objects it names (paying
an invoice in another currency than its own, refunding more than is left) or the operator's
policy (a webhook URL on a private network). The document says so in every operation's 422
response, naming the `errors[].code` such a refusal carries. A "schema-valid request rejected"
finding is therefore dropped only when the answer is 422 and *every* error code it carries is
one of the codes the document names there; any other refusal of a valid request stays a
finding.
"""
import json
import re
import uuid

import schemathesis

VALID = re.compile(r"^[!-~]([ -~]{0,253}[!-~])?$")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        key = headers[name]
        if isinstance(key, str) and VALID.match(key):
            fresh = uuid.uuid4().hex
            # Keep what was generated where there is room (its length and characters are what
            # is being tried), and make the end unique.
            headers[name] = (key[: 255 - len(fresh)] + fresh) if len(key) + len(fresh) > 255 else key + fresh


RULE_CODES = None


@schemathesis.hook
def after_load_schema(context, schema):
    """Reads the rule codes from the document's 422 descriptions (they must all agree)."""
    global RULE_CODES
    found = set()
    for item in schema.raw_schema["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            text = operation.get("responses", {}).get("422", {}).get("description", "")
            if "one of:" in text:
                found.add(tuple(re.findall(r"`([a-z_]+)`", text.split("one of:", 1)[1])))
    if len(found) != 1:
        raise ValueError(f"the 422 responses do not name one set of rule codes: {found}")
    RULE_CODES = set(found.pop())


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure: only a valid request refused for a documented rule."""
    if getattr(failure, "code", None) != "ST202" or response.status_code != 422:
        return True
    try:
        errors = json.loads(response.content)["errors"]
        codes = {e["code"] for e in errors}
    except (ValueError, KeyError, TypeError):
        return True
    return not (codes and RULE_CODES and codes <= RULE_CODES)
