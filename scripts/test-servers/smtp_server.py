"""A real SMTP server for the mail connector tests (aiosmtpd), on 127.0.0.1 only.

It accepts AUTH PLAIN/LOGIN with one fixed test account (over a plain connection:
`auth_require_tls=False`, this is a loopback test server), refuses mail from anybody who
has not logged in, and stores each received message as `<n>.json` in the output
directory: {"mail_from", "rcpt_tos", "data", "tls"} (data = the raw message as text, tls =
the TLS version the message came over, or null for a plain session).

Usage: smtp_server.py OUT_DIR PORT_FILE USER PASSWORD [CERT KEY STARTTLS_PORT_FILE TLS_PORT_FILE]

It picks a free high port and writes it to PORT_FILE once it answers. With CERT and KEY it
also listens on two more ports, with that certificate: one that requires STARTTLS before
anything else (and AUTH only after it), and one with implicit TLS from the first byte
(SMTPS); their ports go to STARTTLS_PORT_FILE and TLS_PORT_FILE.
"""

import json
import os
import signal
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out_dir, port_file, user, password = sys.argv[1:5]
tls_args = sys.argv[5:9]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
os.makedirs(out_dir, exist_ok=True)
lock = threading.Lock()
counter = [0]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    # handled=False: the server itself answers 535 on a refusal.
    return AuthResult(success=ok, handled=False)


class Store:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # A fixed address the tests use to see a refused recipient.
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with lock:
            counter[0] += 1
            n = counter[0]
        ssl_object = server.transport.get_extra_info("ssl_object")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": ssl_object.version() if ssl_object is not None else None,
        }
        tmp = os.path.join(out_dir, f".{n}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(out_dir, f"{n:06d}-{os.getpid()}.json"))
        return "250 Message accepted"


controller = Controller(
    Store(),
    hostname="127.0.0.1",
    port=port,
    authenticator=authenticator,
    auth_require_tls=False,
    auth_required=True,
)
controllers = [controller]


def write_port(path, value):
    with open(path + ".tmp", "w") as f:
        f.write(str(value))
    os.replace(path + ".tmp", path)


if len(tls_args) == 4:
    cert, key, starttls_port_file, tls_port_file = tls_args
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    starttls_port = free_port()
    starttls = Controller(
        Store(),
        hostname="127.0.0.1",
        port=starttls_port,
        authenticator=authenticator,
        auth_required=True,
        tls_context=context,
        require_starttls=True,
    )
    tls_port = free_port()
    implicit = Controller(
        Store(),
        hostname="127.0.0.1",
        port=tls_port,
        authenticator=authenticator,
        auth_required=True,
        # aiosmtpd counts only STARTTLS as TLS; this session is TLS from the first byte.
        auth_require_tls=False,
        ssl_context=context,
        server_hostname="localhost",
    )
    for c in (starttls, implicit):
        c.start()
        controllers.append(c)
    write_port(starttls_port_file, starttls_port)
    write_port(tls_port_file, tls_port)
    print(
        f"smtp test server: STARTTLS on 127.0.0.1:{starttls_port}, implicit TLS on 127.0.0.1:{tls_port}",
        file=sys.stderr,
        flush=True,
    )

controller.start()
write_port(port_file, port)
print(f"smtp test server on 127.0.0.1:{port}, messages in {out_dir}", file=sys.stderr, flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
for c in controllers:
    c.stop()
