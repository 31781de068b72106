"""A static HTTP/1.1 file server for the tests, on 127.0.0.1 and a free port.

It serves a directory read-only and appends one JSON line per request (method, path,
headers, tls) to a log file, so tests can check what the server actually received.

With CERT and KEY it also serves the same directory over HTTPS (TLS, that certificate) on a
second free port, written to TLS_PORT_FILE.

usage: http_server.py ROOT PORT_FILE LOG_FILE [TLS_PORT_FILE CERT KEY]
"""
import http.server
import json
import os
import ssl
import sys
import threading


def write_port(port_file: str, port: int) -> None:
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)


def main() -> None:
    root, port_file, log_file = sys.argv[1:4]
    tls_args = sys.argv[4:7]

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
                            "tls": isinstance(self.connection, ssl.SSLSocket),
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
    if len(tls_args) == 3:
        tls_port_file, cert, key = tls_args
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        tls_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # The handshake runs in the request thread (a client that fails it, e.g. one that
        # does not trust the certificate, must not block the server).
        tls_server.socket = context.wrap_socket(
            tls_server.socket, server_side=True, do_handshake_on_connect=False
        )
        threading.Thread(target=tls_server.serve_forever, daemon=True).start()
        write_port(tls_port_file, tls_server.server_address[1])
    write_port(port_file, server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
