"""A small SIP user agent over TLS, for the tests: Debian's sipp is built without OpenSSL.

Real protocol on a real TLS connection (Python's ``ssl``): REGISTER and INVITE with MD5 digest
authentication (realm and nonce from Asterisk's challenge), ACK, BYE. Enough of RFC 3261 for one
registration and one call at a time; requests Asterisk sends meanwhile are answered 200 OK.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

CRYPTO_SUITE = "AES_CM_128_HMAC_SHA1_80"


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def status(self) -> int | None:
        parts = self.first_line.split(" ", 2)
        return int(parts[1]) if parts[0] == "SIP/2.0" else None

    @property
    def method(self) -> str | None:
        return None if self.status else self.first_line.split(" ", 1)[0]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __str__(self) -> str:
        lines = [self.first_line, *(f"{k}: {v}" for k, v in self.headers)]
        return "\r\n".join(lines) + "\r\n\r\n" + self.body


@dataclass
class Media:
    """One audio stream of an SDP: where it goes and, for SRTP, the sender's key."""

    profile: str  # RTP/AVP or RTP/SAVP
    address: str
    port: int
    crypto_key: bytes | None  # the 30 bytes (key + salt) of a=crypto, if any


def parse_sdp(sdp: str) -> Media:
    address = re.search(r"^c=IN IP4 (\S+)", sdp, re.MULTILINE)
    media = re.search(r"^m=audio (\d+) (\S+)", sdp, re.MULTILINE)
    crypto = re.search(rf"^a=crypto:\d+ {CRYPTO_SUITE} inline:([A-Za-z0-9+/=]+)", sdp, re.M)
    assert address and media, f"no audio stream in\n{sdp}"
    return Media(
        profile=media.group(2),
        address=address.group(1),
        port=int(media.group(1)),
        crypto_key=base64.b64decode(crypto.group(1)) if crypto else None,
    )


def sdp_offer(rtp_port: int, *, srtp_key: bytes | None) -> str:
    """PCMA/PCMU offer: RTP/SAVP with our key when *srtp_key* is given, plain RTP/AVP otherwise."""
    profile = "RTP/SAVP" if srtp_key else "RTP/AVP"
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(2**31)} 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {rtp_port} {profile} 8 0",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:0 PCMU/8000",
    ]
    if srtp_key:
        lines.append(f"a=crypto:1 {CRYPTO_SUITE} inline:{base64.b64encode(srtp_key).decode()}")
    lines.append("a=sendrecv")
    return "\r\n".join(lines) + "\r\n"


def digest_authorization(
    challenge: str, method: str, uri: str, username: str, password: str
) -> str:
    """The Authorization header answering one ``Digest`` challenge (MD5, qop=auth if offered)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    realm, nonce = params["realm"], params["nonce"]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1, ha2 = md5(f"{username}:{realm}:{password}"), md5(f"{method}:{uri}")
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields += [f'response="{response}"', "algorithm=MD5"]
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


@dataclass
class Call:
    call_id: str
    from_tag: str
    cseq: int
    remote_target: str = ""
    to_header: str = ""
    responses: list[SipMessage] = field(default_factory=list)

    @property
    def codes(self) -> list[int]:
        return [r.status for r in self.responses if r.status]

    @property
    def final(self) -> SipMessage:
        return self.responses[-1]


class SipTlsClient:
    """One line's device on one TLS connection to Asterisk."""

    def __init__(
        self, host: str, port: int, username: str, password: str, *, trust: Path, timeout=10.0
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.timeout = timeout
        # Verify Asterisk's certificate against the one the test expects it to present.
        context = ssl.create_default_context(cafile=str(trust))
        context.check_hostname = False  # a loopback address; the certificate itself is pinned
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.local_port = self.sock.getsockname()[1]
        self._buffer = b""
        self.from_tag = secrets.token_hex(6)
        self.received_requests: list[SipMessage] = []

    def close(self) -> None:
        self.sock.close()

    @property
    def peer_certificate(self) -> bytes:
        """What Asterisk presented, DER."""
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        return der

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.host}"

    @property
    def contact(self) -> str:
        return f"<sip:{self.username}@127.0.0.1:{self.local_port};transport=tls>"

    # --- wire -------------------------------------------------------------------------------------
    def send(self, message: SipMessage) -> None:
        body = message.body.encode()
        headers = [(k, v) for k, v in message.headers if k.lower() != "content-length"]
        message = SipMessage(message.first_line, [*headers, ("Content-Length", str(len(body)))])
        self.sock.sendall(str(message).encode() + body)

    def _read_message(self, deadline: float) -> SipMessage:
        while b"\r\n\r\n" not in self._buffer:
            self._fill(deadline)
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        message = SipMessage(lines[0], headers)
        length = int(message.header("Content-Length") or message.header("l") or 0)
        while len(rest) < length:
            self._fill(deadline)
            rest = self._buffer.partition(b"\r\n\r\n")[2]
        message.body, self._buffer = rest[:length].decode(), rest[length:]
        return message

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete SIP message from Asterisk in {self.timeout}s")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Asterisk closed the TLS connection")
        self._buffer += chunk

    def response(self, call_id: str) -> SipMessage:
        """The next response of *call_id*; requests arriving meanwhile are answered 200 OK."""
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.status is None:
                self.received_requests.append(message)
                if message.method != "ACK":
                    self._answer_ok(message)
                continue
            if message.header("Call-ID") == call_id:
                return message

    def final_response(self, call: Call) -> SipMessage:
        while True:
            message = self.response(call.call_id)
            call.responses.append(message)
            if message.status and message.status >= 200:
                return message

    def _answer_ok(self, request: SipMessage) -> None:
        keep = ("via", "from", "to", "call-id", "cseq")
        self.send(
            SipMessage("SIP/2.0 200 OK", [(k, v) for k, v in request.headers if k.lower() in keep])
        )

    def _request(
        self, method: str, uri: str, call: Call, *, to: str, extra=(), body: str = ""
    ) -> SipMessage:
        cseq = f"{call.cseq} {method}"  # an ACK carries its INVITE's number: not incremented
        headers = [
            (
                "Via",
                f"SIP/2.0/TLS 127.0.0.1:{self.local_port};rport;"
                f"branch=z9hG4bK{secrets.token_hex(8)}",
            ),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={call.from_tag}"),
            ("To", to),
            ("Call-ID", call.call_id),
            ("CSeq", cseq),
            ("Contact", self.contact),
            ("User-Agent", "centrex-tests-tls"),
            *extra,
        ]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return SipMessage(f"{method} {uri} SIP/2.0", headers, body)

    def _authenticated(
        self, method: str, uri: str, call: Call, *, to: str, extra=(), body: str = ""
    ) -> SipMessage:
        """Send a request; answer a 401/407 challenge once (ACKing it for an INVITE)."""
        request = self._request(method, uri, call, to=to, extra=extra, body=body)
        self.send(request)
        final = self.final_response(call)
        if final.status not in (401, 407):
            return final
        if method == "INVITE":
            self._ack_failure(request, final)
        name = "WWW-Authenticate" if final.status == 401 else "Proxy-Authenticate"
        challenge = next(
            c for c in final.header_all(name) if "MD5" in c.upper() or "algorithm" not in c.lower()
        )
        answer = digest_authorization(challenge, method, uri, self.username, self.password)
        auth_name = "Authorization" if final.status == 401 else "Proxy-Authorization"
        call.cseq += 1
        request = self._request(
            method, uri, call, to=to, body=body, extra=(*extra, (auth_name, answer))
        )
        self.send(request)
        final = self.final_response(call)
        if method == "INVITE" and final.status and final.status >= 300:
            self._ack_failure(request, final)
        return final

    def _ack_failure(self, invite: SipMessage, response: SipMessage) -> None:
        """ACK of a non-2xx final response: same branch and CSeq number as the INVITE."""
        number = (invite.header("CSeq") or "").split()[0]
        headers = [
            ("Via", invite.header("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", invite.header("From") or ""),
            ("To", response.header("To") or ""),
            ("Call-ID", invite.header("Call-ID") or ""),
            ("CSeq", f"{number} ACK"),
        ]
        self.send(SipMessage(f"ACK {invite.first_line.split()[1]} SIP/2.0", headers))

    # --- what a phone does ------------------------------------------------------------------------
    def register(self, *, expires: int = 300) -> SipMessage:
        call = Call(call_id=secrets.token_hex(12), from_tag=self.from_tag, cseq=1)
        uri = f"sip:{self.host}:{self.port};transport=tls"
        return self._authenticated(
            "REGISTER", uri, call, to=f"<{self.aor}>", extra=(("Expires", str(expires)),)
        )

    def invite(self, dialled: str, sdp: str) -> Call:
        """INVITE *dialled*; returns once a final response came (2xx or not)."""
        call = Call(call_id=secrets.token_hex(12), from_tag=secrets.token_hex(6), cseq=1)
        uri = f"sip:{dialled}@{self.host}:{self.port};transport=tls"
        to = f"<sip:{dialled}@{self.host}>"
        final = self._authenticated("INVITE", uri, call, to=to, body=sdp)
        call.to_header = final.header("To") or to
        contact = re.search(r"<([^>]+)>", final.header("Contact") or "")
        call.remote_target = contact.group(1) if contact else uri
        return call

    def answer_call(self, sdp: str, *, within_s: float = 30) -> SipMessage:
        """Wait for an INVITE and answer it 200 with *sdp* (its Record-Route kept, so the
        dialog goes on through the proxy), then for the caller's BYE (answered 200). Returns
        the INVITE."""
        deadline = time.monotonic() + within_s
        invite: SipMessage | None = None
        while True:
            message = self._read_message(deadline)
            if message.status is not None:
                continue
            self.received_requests.append(message)
            if message.method == "INVITE" and invite is None:
                invite = message
                keep = ("via", "record-route", "from", "call-id", "cseq")
                headers = [(k, v) for k, v in message.headers if k.lower() in keep]
                headers += [
                    ("To", f"{message.header('To')};tag={secrets.token_hex(6)}"),
                    ("Contact", self.contact),
                    ("Content-Type", "application/sdp"),
                ]
                self.send(SipMessage("SIP/2.0 200 OK", headers, sdp))
            elif message.method == "BYE" and invite is not None:
                self._answer_ok(message)
                return invite
            elif message.method != "ACK":
                self._answer_ok(message)

    def ack(self, call: Call) -> None:
        """ACK of the 2xx: a request of its own (new branch), CSeq number of the INVITE."""
        self.send(self._request("ACK", call.remote_target, call, to=call.to_header))

    def bye(self, call: Call) -> SipMessage:
        call.cseq += 1
        self.send(self._request("BYE", call.remote_target, call, to=call.to_header))
        return self.final_response(call)
