#!/usr/bin/env python3
"""A token service for docker-registry's bearer-token auth, for tests only (stdlib + openssl CLI).

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...] with basic credentials answers
{"token": JWT, "access_token": JWT} granting the requested actions; without credentials the token
grants nothing (the registry then refuses the request); with wrong credentials it answers 401.
The JWT is RS256, signed by `openssl dgst -sha256 -sign KEY`, and carries the certificate in its
x5c header: the registry trusts it through its rootcertbundle (the same certificate).
Listens on 127.0.0.1 only.
"""
import argparse
import base64
import http.server
import json
import os
import subprocess
import sys
import time
import urllib.parse


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der_b64(cert_path: str) -> str:
    der = subprocess.run(["openssl", "x509", "-in", cert_path, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return base64.b64encode(der).decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args()
    x5c = [cert_der_b64(args.cert)]

    def sign(claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": x5c}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", args.key], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return signing_input + "." + b64url(sig)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):  # to the log file the test keeps
            sys.stderr.write("token: " + (fmt % a) + "\n")

        def reply(self, status: int, body: dict, extra=None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            if url.path != "/token":
                self.reply(404, {"error": "not found"})
                return
            q = urllib.parse.parse_qs(url.query)
            subject = ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                except Exception:  # noqa: BLE001 - a malformed header is just bad credentials
                    user, password = "", ""
                if user != args.user or password != args.password:
                    self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                               {"WWW-Authenticate": 'Basic realm="slimtrace-test-token"'})
                    return
                subject = user
            access = []
            if subject:
                for scope in q.get("scope", []):
                    parts = scope.split(":")
                    if len(parts) >= 3 and parts[0] == "repository":
                        name = ":".join(parts[1:-1])
                        access.append({"type": "repository", "name": name, "actions": parts[-1].split(",")})
            now = int(time.time())
            claims = {"iss": args.issuer, "sub": subject, "aud": q.get("service", [args.service])[0],
                      "exp": now + 600, "nbf": now - 60, "iat": now, "jti": b64url(os.urandom(12)),
                      "access": access}
            token = sign(claims)
            self.reply(200, {"token": token, "access_token": token, "expires_in": 600})

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
