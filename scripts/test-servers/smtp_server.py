"""A real SMTP server for the mail connector tests (aiosmtpd), on 127.0.0.1 only.

It accepts AUTH PLAIN/LOGIN with one fixed test account (over a plain connection:
`auth_require_tls=False`, this is a loopback test server), refuses mail from anybody who
has not logged in, and stores each received message as `<n>.json` in the output
directory: {"mail_from", "rcpt_tos", "data"} (data = the raw message as text).

Usage: smtp_server.py OUT_DIR PORT_FILE USER PASSWORD

It picks a free high port and writes it to PORT_FILE once it answers.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out_dir, port_file, user, password = sys.argv[1:5]


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
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", "replace"),
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
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.replace(port_file + ".tmp", port_file)
print(f"smtp test server on 127.0.0.1:{port}, messages in {out_dir}", file=sys.stderr, flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
controller.stop()
