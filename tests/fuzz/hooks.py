"""Schemathesis hooks of the fuzzing run (tests/fuzz/fuzz.py starts one Schemathesis run per caller).

Who the requests come from is chosen by FUZZ_CALLER:
  anonymous  no credentials;
  session    a signed-in account's session cookie, its CSRF token in X-CSRF-Token (FUZZ_LOGIN_NAME,
             FUZZ_PASSWORD); a request that ends the session (sign-out) makes the next one answer
             401, and Schemathesis then signs in again through `get` and replays that request.
             FUZZ_CSRF=no leaves the CSRF token out, as a forged cross-site request would: then
             the `session_changes_need_the_csrf_token` check fails any change accepted anyway.
             FUZZ_RESTRICTED=yes expects a session restricted to two-factor enrolment (the
             company requires 2FA, the account has none);
  token      the operator's API token (FUZZ_TOKEN_FILE holds it) on the company and operator
             endpoints, the only ones that take a token; a 401 there means the fuzzer revoked it
             (DELETE /api/v1/tokens/{id}), so `get` makes a new one with `latchkey token create`.
Every request is written to FUZZ_EVENTS as `call<TAB>METHOD /path/{template}<TAB>status<TAB>the
method sent` (the coverage phase also tries methods the path does not document), every
credential made as `auth<TAB>what`, for the driver's counts.
"""

import os
import re
import subprocess
import threading

import requests
import schemathesis

CALLER = os.environ["FUZZ_CALLER"]
BASE = os.environ["FUZZ_BASE"]
_events_lock = threading.Lock()
_events = open(os.environ["FUZZ_EVENTS"], "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run


def record(*fields):
    with _events_lock:
        _events.write("\t".join(map(str, fields)) + "\n")
        _events.flush()


@schemathesis.hook
def after_call(context, case, response):
    record("call", case.operation.label, response.status_code, case.method.upper())


class AuthSetupFailed(Exception):
    pass


WITH_CSRF = os.environ.get("FUZZ_CSRF", "yes") == "yes"
# Where a session is the caller (or one of the callers) and so a change needs the CSRF token.
SESSION_PATHS = re.compile(r"^/api/v1/(me\b|sign-out$|companies\b|tokens\b)")


def sign_in(login_name, password):
    """A fresh session: the cookie to send back and its CSRF token."""
    r = requests.post(f"{BASE}/api/v1/sign-in", json={"login_name": login_name, "password": password}, timeout=30)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    expected = "enrollment_required" if os.environ.get("FUZZ_RESTRICTED") == "yes" else "signed_in"
    if r.status_code != 200 or body.get("state") != expected:
        raise AuthSetupFailed(f"sign-in as {login_name} answered {r.status_code} {body.get('error') or body.get('state')}")
    # The cookie is `Secure` (the production setting), so a cookie jar would not send it over
    # plain HTTP: take it from Set-Cookie and send it by hand.
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    return {"cookie": cookie, "csrf": body["csrf_token"]}


@schemathesis.check
def session_changes_need_the_csrf_token(ctx, response, case):
    """A change through a session without its CSRF token is a forged request: refused."""
    changes = case.method.upper() not in ("GET", "HEAD", "OPTIONS")
    if CALLER == "session" and not WITH_CSRF and changes and SESSION_PATHS.match(case.path) and 200 <= response.status_code < 300:
        raise AssertionError(f"{case.method} {case.path} accepted a change without the CSRF token ({response.status_code})")


# A long refresh interval: a session is made again only when the server says it ended (401).
if CALLER == "session":

    @schemathesis.auth(refresh_interval=3600)
    class Session:
        def get(self, case, context):
            record("auth", "signed in")
            return sign_in(os.environ["FUZZ_LOGIN_NAME"], os.environ["FUZZ_PASSWORD"])

        def set(self, case, data, context):
            csrf = {"X-CSRF-Token": data["csrf"]} if WITH_CSRF else {}
            case.headers = {**(case.headers or {}), "Cookie": data["cookie"], **csrf}

elif CALLER == "token":

    @schemathesis.auth(refresh_interval=3600).apply_to(path_regex=r"^/api/v1/(companies|tokens)")
    class OperatorToken:
        def __init__(self):
            self.handed_out = False

        def get(self, case, context):
            path = os.environ["FUZZ_TOKEN_FILE"]
            if self.handed_out:
                made = subprocess.run(
                    [os.environ["FUZZ_BIN"], "token", "create", "--name", "fuzz-operator"],
                    capture_output=True, text=True, timeout=60, check=False,
                )
                if made.returncode != 0:
                    raise AuthSetupFailed(f"latchkey token create failed: {made.stderr.strip()}")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(made.stdout.strip())
                record("auth", "token made")
            self.handed_out = True
            with open(path, encoding="utf-8") as f:
                return f.read().strip()

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

elif CALLER != "anonymous":
    raise SystemExit(f"FUZZ_CALLER must be anonymous, session or token, not {CALLER!r}")
