"""A static HTTP/1.1 file server for the tests, on 127.0.0.1 and a free port.

It serves a directory read-only and appends one JSON line per request (method, path,
headers) to a log file, so tests can check what the server actually received.

usage: http_server.py ROOT PORT_FILE LOG_FILE
"""
import http.server
import json
import sys


def main() -> None:
    root, port_file, log_file = sys.argv[1:4]

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=root, **kwargs)

        def _record(self) -> None:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(
                    json.dumps(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                    + "\n"
                )

        def do_GET(self):
            self._record()
            super().do_GET()

        def do_HEAD(self):
            self._record()
            super().do_HEAD()

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
