#!/usr/bin/env python3
"""Generated-request fuzzing of Latchkey's JSON API with Schemathesis, against its own document.

Starts `latchkey serve` on a temporary SQLite data dir (mail and texts to the outbox), makes the
data through the real CLI and API (two companies, the first with the two-factor and SSO pilots on;
an office manager and a user who completed setup from the welcome email in the outbox, a user
still invited; API tokens; the second company requiring 2FA), then runs Schemathesis against the
served /api/openapi.json once per caller: signed out; signed in as the user (session cookie and
X-CSRF-Token), and as the user without the CSRF token; as the second company's office manager,
whose session is restricted to 2FA enrolment; as the office manager; with the operator's API
token. It fails when a check fails (a 5xx, a status code, content type, header or body the
document does not describe, a change accepted without the CSRF token), when fewer than 2,000
requests were made or an operation of the document was never called, or when the server's log
holds a panic.

    python3 tests/fuzz/fuzz.py [--seed N] [--max-examples N] [--keep]

Reads LATCHKEY_BIN (default target/debug/latchkey). A run's data, server log and Schemathesis
output stay in a temp dir when it fails (or with --keep).
"""

import argparse
import collections
import email
import email.policy
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DOMAIN = "fuzz.example"
OTHER_DOMAIN = "other.example"
PASSWORD = "Fuzz-Passw0rd-1"
PIN = "4071"
MIN_REQUESTS = 2000
# "No hang": one caller's run is a few tens of seconds; this bound only stops a stuck one.
RUN_TIMEOUT_SECS = 600
# Company and operator endpoints: the only ones an API token is for.
TOKEN_PATHS = r"^/api/v1/(companies|tokens)"

# Throttles and send limits are tested by the Rust suites (two_factor.rs, codes.rs, http.rs); here
# they would answer 429 to every request after the first few hundred wrong passwords and codes,
# and the fuzzing would stop reaching the handlers. Everything else is the default configuration.
UNTHROTTLED = {
    "LATCHKEY_THROTTLE__ACCOUNT_MAX_FAILURES": "1000000",
    "LATCHKEY_THROTTLE__CLIENT_MAX_FAILURES": "1000000",
    "LATCHKEY_TWO_FACTOR__MAX_FAILURES": "1000000",
    "LATCHKEY_TWO_FACTOR__SENDS_PER_USER_PER_HOUR": "1000000",
    "LATCHKEY_TWO_FACTOR__SENDS_PER_NUMBER_PER_HOUR": "1000000",
    "LATCHKEY_TWO_FACTOR__SENDS_PER_COMPANY_PER_HOUR": "1000000",
}


class Failed(Exception):
    pass


def main():
    args = parse_args()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="latchkey-fuzz-"))
    server = None
    # (what, passed): one per Schemathesis run, then the counts and the log.
    checks = []
    try:
        require_schemathesis()
        env = server_env(tmp, free_port())
        server = start_server(env, tmp / "server.log")
        base = f"http://{env['LATCHKEY_LISTEN']}"
        prepare(env, base, tmp)
        print(f"fuzz: seed {args.seed} (repeat with --seed {args.seed}), {args.max_examples} random cases per operation and caller")
        results = [fuzz_run(run, env, base, tmp, args) for run in callers(tmp)]
        checks += [(r["title"], r["ok"]) for r in results]
        checks.append(("counts", counts_hold(results, operations(base), started)))
    except Failed as e:
        print(f"fuzz: FAILED: {e}")
        checks.append(("setup", False))
    finally:
        stop_server(server)
    checks.append(("no panic in the server log", no_panics(tmp / "server.log")))
    ok = all(passed for _, passed in checks)
    print(f"fuzz: {time.monotonic() - started:.0f} s in all")
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"fuzz: data, server log and Schemathesis output kept in {tmp}")
    failed = [what for what, passed in checks if not passed]
    print(f"fuzz: failed: {', '.join(failed)}" if failed else "fuzz: every check passed")
    print(f"fuzz: {len(checks) - len(failed)} passed, {len(failed)} failed")
    return 0 if ok else 1


def require_schemathesis():
    try:
        import schemathesis  # noqa: PLC0415 - only to say how to get it
    except ImportError:
        raise Failed("Schemathesis is not installed: run `bash scripts/setup.sh`") from None
    print(f"fuzz: Schemathesis {schemathesis.__version__}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # CI repeats one seed so a merge is judged on its own changes; a developer's run explores new
    # cases each time (the seed is printed, so a finding can be repeated).
    default_seed = 20261123 if os.environ.get("CI") == "true" else random.randrange(1 << 32)
    p.add_argument("--seed", type=int, default=default_seed, help="Schemathesis seed (random by default; fixed with CI=true)")
    p.add_argument("--max-examples", type=int, default=25, help="random cases per operation and caller")
    p.add_argument("--keep", action="store_true", help="keep the temp dir after a pass")
    return p.parse_args()


def binary():
    return str(Path(os.environ.get("LATCHKEY_BIN", REPO / "target" / "debug" / "latchkey")).resolve())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(tmp, port):
    """Our environment without any LATCHKEY_* (a stray setting would change the run), plus the run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    return {**env, "LATCHKEY_DATA_DIR": str(tmp / "data"), "LATCHKEY_LISTEN": f"127.0.0.1:{port}", **UNTHROTTLED}


# ------------------------------------------------------------------------------------ the server


def start_server(env, log_path):
    if not os.access(binary(), os.X_OK):
        raise Failed(f"no latchkey binary at {binary()}: build it with `cargo build -p latchkey` or set LATCHKEY_BIN")
    with open(log_path, "ab") as log:
        server = subprocess.Popen([binary(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    ready = f"http://{env['LATCHKEY_LISTEN']}/readyz"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failed(f"the server exited ({server.returncode}) before it was ready; see {log_path}")
        try:
            if requests.get(ready, timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.1)
    server.kill()
    raise Failed(f"{ready} was not 200 after 30 s; see {log_path}")


def stop_server(server):
    if server is None or server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def no_panics(log_path):
    """A panic in a request is a bug even when the client got an answer: the log must have none."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return True
    panics = [line for line in lines if "panicked" in line]
    for line in panics[:20]:
        print(f"fuzz: server log: {line}")
    print(f"fuzz: server log: {len(panics)} panic line(s)")
    return not panics


# ------------------------------------------------------------------------------------ the data


def cli(env, *args):
    r = subprocess.run([binary(), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise Failed(f"latchkey {' '.join(args[:2])} exited with {r.returncode}: {r.stderr.strip()}")
    return r.stdout.strip()


def prepare(env, base, tmp):
    """The data the operations reach: built the way an operator and the people would build it."""
    for name, domain in (("Fuzz Company", DOMAIN), ("Other Company", OTHER_DOMAIN)):
        cli(env, "company", "create", "--name", name, "--domain", domain)
    cli(env, "company", "enable", "--domain", DOMAIN, "--feature", "two-factor")
    cli(env, "company", "enable", "--domain", DOMAIN, "--feature", "sso")
    cli(env, "company", "enable", "--domain", OTHER_DOMAIN, "--feature", "two-factor")
    outbox = tmp / "data" / "outbox"
    people = [
        (DOMAIN, "100", f"office.manager@{DOMAIN}", "office-manager", True),
        (DOMAIN, "101", f"user.101@{DOMAIN}", "user", True),
        (DOMAIN, "102", f"user.102@{DOMAIN}", "user", False),
        (OTHER_DOMAIN, "100", f"office.manager@{OTHER_DOMAIN}", "office-manager", True),
    ]
    for domain, extension, address, role, set_up in people:
        cli(env, "user", "create", "--company", domain, "--extension", extension, "--email", address, "--role", role)
        if set_up:
            complete_setup(base, welcome_token(outbox, address))
    # The decoy is for the fuzzer's DELETE /api/v1/tokens/{id}; the company token is listed.
    cli(env, "token", "create", "--name", "fuzz-decoy")
    cli(env, "token", "create", "--name", "fuzz-company", "--company", DOMAIN)
    (tmp / "operator-token").write_text(cli(env, "token", "create", "--name", "fuzz-operator"), encoding="utf-8")
    operator = {"Authorization": f"Bearer {(tmp / 'operator-token').read_text(encoding='utf-8')}"}
    added = requests.post(f"{base}/api/v1/companies/{DOMAIN}/users/101/emails", json={"email": f"voicemail.101@{DOMAIN}"}, headers=operator, timeout=30)
    expect(added, 201, "adding an additional email with the operator token")
    # The other company requires 2FA, which its office manager has not set up: a sign-in there
    # gets a session restricted to enrolment.
    required = {"two_factor": "required", "allowed_methods": ["totp", "sms", "email"], "default_method": None, "default_method_locked": False}
    expect(requests.put(f"{base}/api/v1/companies/{OTHER_DOMAIN}/policy", json=required, headers=operator, timeout=30), 200, "requiring 2FA")


def welcome_token(outbox, address, timeout=10):
    """The Complete Setup token of the welcome email to `address` (mail is sent in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(outbox.glob("*.eml")) if outbox.exists() else []:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address not in str(msg["To"]):
                continue
            text = msg.get_body(preferencelist=("plain",)).get_content()
            found = re.search(r"/complete-setup/([A-Za-z0-9_-]+)", text)
            if found:
                return found.group(1)
        time.sleep(0.1)
    raise Failed(f"no welcome email with a Complete Setup link to {address} in {outbox}")


def complete_setup(base, token):
    expect(requests.get(f"{base}/api/v1/activation/{token}", timeout=30), 200, "opening a Complete Setup link")
    body = {"password": PASSWORD, "password_confirmation": PASSWORD, "pin": PIN}
    expect(requests.post(f"{base}/api/v1/activation/{token}", json=body, timeout=30), 200, "Complete Setup")


def expect(response, status, what):
    if response.status_code != status:
        raise Failed(f"{what} answered {response.status_code}, not {status}: {response.text[:300]}")


# ------------------------------------------------------------------------------------ the runs


def callers(tmp):
    """(title, FUZZ_CALLER, extra environment, operations included) per Schemathesis run: no
    credentials; a user's session, with and without its CSRF token (a forged request); a session
    restricted to 2FA enrolment; an office manager's; the operator's token. The office manager
    and the operator come last: their changes (a user disabled, a policy set) must not change what
    the earlier callers meet."""
    session = lambda login: {"FUZZ_LOGIN_NAME": login, "FUZZ_PASSWORD": PASSWORD}  # noqa: E731
    return [
        ("signed out", "anonymous", {}, None),
        (f"user 101@{DOMAIN}", "session", session(f"101@{DOMAIN}"), None),
        (f"user 101@{DOMAIN} without the CSRF token", "session", {**session(f"101@{DOMAIN}"), "FUZZ_CSRF": "no"}, None),
        (f"office manager 100@{OTHER_DOMAIN}, restricted to 2FA enrolment", "session",
            {**session(f"100@{OTHER_DOMAIN}"), "FUZZ_RESTRICTED": "yes"}, None),
        (f"office manager 100@{DOMAIN}", "session", session(f"100@{DOMAIN}"), None),
        ("operator API token", "token", {"FUZZ_TOKEN_FILE": str(tmp / "operator-token")}, TOKEN_PATHS),
    ]


def fuzz_run(run, env, base, tmp, args):
    title, caller, extra, include = run
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    events, output = tmp / f"{slug}.events", tmp / f"{slug}.schemathesis.txt"
    run_env = {
        **env,
        **extra,
        "FUZZ_CALLER": caller,
        "FUZZ_BASE": base,
        "FUZZ_EVENTS": str(events),
        "FUZZ_BIN": binary(),
        "SCHEMATHESIS_HOOKS": str(HERE / "hooks.py"),
    }
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "--no-color",
        "run", f"{base}/api/openapi.json", "--seed", str(args.seed), "--max-examples", str(args.max_examples),
    ]
    if include:
        cmd += ["--include-path-regex", include]
    t0 = time.monotonic()
    with open(output, "w", encoding="utf-8") as out:
        try:
            code = subprocess.run(cmd, env=run_env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_SECS, check=False).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    calls, auths = read_events(events)
    statuses = collections.Counter(c.status for c in calls)
    histogram = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    probes = sum(1 for c in calls if not c.documented_method)
    print(f"fuzz: {title}: {len(calls)} requests over {len({c.operation for c in calls})} operations in {time.monotonic() - t0:.0f} s "
          f"({probes} with a method the path does not document; {histogram}){credentials_note(collections.Counter(auths))}")
    if code != 0:
        print(f"fuzz: {title}: Schemathesis exited with {code}; its report:")
        print(report_of(output))
    return {"title": title, "ok": code == 0, "calls": calls}


def credentials_note(made):
    notes = []
    if made["signed in"] > 1:
        notes.append(f"signed in again after {made['signed in'] - 1} answer(s) 401 (a session ended, or a wrong password)")
    if made["token made"]:
        notes.append(f"{made['token made']} new token(s) after the fuzzer revoked its own")
    return f"; {'; '.join(notes)}" if notes else ""


class Call(collections.namedtuple("Call", "operation status method")):
    @property
    def documented_method(self):
        return self.operation.startswith(f"{self.method} ")


def read_events(path):
    """The requests the hooks saw (`Call`s) and the credentials they made."""
    calls, auths = [], []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            kind, *rest = line.split("\t")
            if kind == "call":
                calls.append(Call(rest[0], int(rest[1]), rest[2]))
            elif kind == "auth":
                auths.append(rest[0])
    return calls, auths


def report_of(output):
    """Schemathesis's failures and summary (from its FAILURES heading on), else its last lines."""
    text = output.read_text(encoding="utf-8", errors="replace")
    at = text.find("= FAILURES =")
    if at < 0:
        at = text.find("= ERRORS =")
    section = text[text.rfind("\n", 0, at) + 1 :] if at >= 0 else "\n".join(text.splitlines()[-60:])
    lines = section.splitlines()
    return "\n".join(lines[:400] + ([f"… ({len(lines) - 400} more lines in {output})"] if len(lines) > 400 else []))


def operations(base):
    doc = requests.get(f"{base}/api/openapi.json", timeout=30).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sorted(f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m in methods)


def counts_hold(results, documented, started):
    """At least MIN_REQUESTS requests, and every operation of the document called."""
    calls = [c for r in results for c in r["calls"]]
    # An operation counts as called by requests with its own method, not by the method probes.
    per_op = collections.Counter(c.operation for c in calls if c.documented_method)
    own = sum(per_op.values())
    never = [op for op in documented if per_op[op] == 0]
    server_errors = sum(1 for c in calls if c.status >= 500)
    print(f"fuzz: {len(calls)} requests in all, {own} of them with the operation's own method, over "
          f"{len(documented) - len(never)}/{len(documented)} operations (fewest calls of one: {min(per_op[op] for op in documented)}); "
          f"{server_errors} answered 5xx; {time.monotonic() - started:.0f} s so far")
    if own < MIN_REQUESTS:
        print(f"fuzz: FAILED: {own} requests with the operations' own methods, fewer than {MIN_REQUESTS}")
    for op in never:
        print(f"fuzz: FAILED: {op} was never called")
    return own >= MIN_REQUESTS and not never


if __name__ == "__main__":
    sys.exit(main())
