#!/usr/bin/env python3
"""A proxy in front of a registry that fails the first request of each kind, for retry tests.

The first request for each (method, path) answers 503 (or 429 for HEAD, so both are seen), with
upload session IDs left out of the path, so that every kind of request a client makes (ping,
HEAD, GET, POST, PATCH, PUT) meets one transient failure and must retry. Everything else is
forwarded to the registry unchanged. Listens on 127.0.0.1 only; prints one line per failure.
"""
import argparse
import http.client
import http.server
import re
import sys
import threading

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    args = ap.parse_args()
    seen = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def handle_any(self):
            path = self.path.split("?", 1)[0]
            key = (self.command, re.sub(r"/uploads/[^/]+$", "/uploads/ID", path))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                first = key not in seen
                seen.add(key)
            if first:
                status = 429 if self.command == "HEAD" else 503
                print(f"injected {status} for {self.command} {path}", flush=True)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            conn = http.client.HTTPConnection("127.0.0.1", args.upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body=body if self.command not in ("GET", "HEAD") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            if self.command == "HEAD":
                self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
