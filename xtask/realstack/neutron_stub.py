"""A Neutron stand-in for the local real cloud: Nova asks Neutron even for servers booted with
`--nic none`, and an empty network service is all it needs.

Answers the version document at `/`, an empty list for every `GET /v2.0/<collection>`
(`{"ports": []}`, `{"networks": []}`, ...) and 404 with Neutron's error body for anything else.
Usage: python neutron_stub.py PORT (binds 127.0.0.1 only).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        host = self.headers.get("Host", "127.0.0.1")
        if path in ("", "/v2.0"):
            if path == "":
                self._answer(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                    {"rel": "self", "href": f"http://{host}/v2.0/"}]}]})
            else:
                self._answer(200, {"resources": []})
            return
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "v2.0":
            collection = parts[2].removesuffix(".json").replace("-", "_")
            self._answer(200, {collection: []})
            return
        self._not_found()

    def _not_found(self):
        self._answer(404, {"NeutronError": {"type": "HTTPNotFound", "message": f"{self.path} not found",
                                            "detail": ""}})

    do_POST = do_PUT = do_DELETE = _not_found

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
