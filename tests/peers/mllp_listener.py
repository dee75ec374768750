"""A test HL7 v2 MLLP listener: answers every message with an ACK in one fixed mode.

Run as its own process (the bridge talks to it over TCP like to an interface engine)::

    python tests/peers/mllp_listener.py --port 2575 --mode AA --log received.jsonl

Modes: AA (accept), AE (application error), AR (reject), none (read, never answer).
With ``--certificate`` and ``--private-key`` it speaks MLLP over TLS; ``--client-ca`` also requires
a client certificate issued by that CA (mutual TLS).
Each message received is appended to ``--log`` as one JSON line (control id, type, result status).
"""

from __future__ import annotations

import argparse
import json
import socketserver
import ssl
from datetime import UTC, datetime
from pathlib import Path

import hl7

START, END = b"\x0b", b"\x1c\r"


def ack_for(message: str, code: str) -> bytes:
    """An ACK^R01 echoing the message's control id (MSA-2), with a text for the error modes."""
    msh = hl7.parse(message).segment("MSH")
    sep = "|"
    control_id = str(msh[10])
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    text = {"AA": "", "AE": "interface engine busy, retry later", "AR": "unknown observation code"}[code]
    segments = [
        sep.join(
            [
                "MSH",
                "^~\\&",
                "LISTENER",
                "TEST",
                str(msh[3]),
                str(msh[4]),
                stamp,
                "",
                "ACK^R01^ACK",
                f"A{control_id}",
                "P",
                "2.5.1",
            ]
        ),
        sep.join(["MSA", code, control_id, text]),
    ]
    return ("\r".join(segments) + "\r").encode()


def make_handler(mode: str, log: Path) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            buf = b""
            while True:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while END in buf:
                    frame, buf = buf.split(END, 1)
                    message = frame.lstrip(START).decode("utf-8", "replace")
                    parsed = hl7.parse(message)
                    obr = parsed.segment("OBR")
                    entry = {
                        "control_id": str(parsed.segment("MSH")[10]),
                        "type": str(parsed.segment("MSH")[9]),
                        "result_status": str(obr[25]) if len(obr) > 25 else "",
                        "mode": mode,
                    }
                    with log.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(entry) + "\n")
                    if mode != "none":
                        self.request.sendall(START + ack_for(message, mode) + END)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["AA", "AE", "AR", "none"], default="AA")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--certificate", type=Path, help="PEM server certificate: MLLP over TLS")
    parser.add_argument("--private-key", type=Path, help="PEM key of --certificate")
    parser.add_argument("--client-ca", type=Path, help="require a client certificate issued by this CA")
    args = parser.parse_args()
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", args.port), make_handler(args.mode, args.log)) as server:
        server.daemon_threads = True
        if args.certificate:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.certificate, args.private_key)
            if args.client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(args.client_ca)
            # the handshake runs on accept; one a client aborts is dropped by socketserver (an OSError)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        print("listening", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
