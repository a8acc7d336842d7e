#!/usr/bin/python3
"""A multiplexing HTTP/2 client for the test suites (Debian's python3-h2).

  h2client.py HOST PORT TLS CONNS BURSTS STREAMS OUT

opens CONNS connections at once (one thread each; TLS 1 is h2 over TLS with
ALPN h2, 0 is h2c by prior knowledge) and on each sends BURSTS bursts of
STREAMS concurrent requests: all the burst's HEADERS frames in one write,
then it reads until every stream of the burst has ended. The first request
of each burst is for a missing file (/missing-...), the others cycle through
/ok.txt, /big.bin, /missing-..., /heads.txt; every other request sends its
own x-request-id (own-C-N). Each request gets a unique query or name.

One line per request goes to OUT, tab-separated:
  conn burst pos sid order prev status path sent_id echoed sha256 length
where `order` is the rank of its response HEADERS among the connection's,
`prev` the stream of the frame received just before that HEADERS frame (0:
none), `echoed` the x-request-id values of the response, comma-separated
(- if none). Exits 1 with a line on stderr on any protocol error.
"""
import hashlib
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings

HOST, PORT, TLS = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
CONNS, BURSTS, STREAMS, OUT = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
PATHS = ["/ok.txt", "/big.bin", "/missing", "/heads.txt"]

lines, errors, lock = [], [], threading.Lock()


def frame_streams(buf):
    """Stream IDs of the complete frames in buf (bytes the server sent), and the rest."""
    sids = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[0:3], "big")
        if len(buf) < 9 + n:
            break
        sids.append((buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF))
        buf = buf[9 + n:]
    return sids, buf


def run(ci):
    sock = socket.create_connection((HOST, PORT))
    if TLS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=HOST)
        if sock.selected_alpn_protocol() != "h2":
            raise RuntimeError("ALPN: %r" % sock.selected_alpn_protocol())
    cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(cfg)
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    conn.increment_flow_control_window(1 << 24)
    sock.sendall(conn.data_to_send())
    raw, order, last_sid, n = b"", 0, 0, 0
    for burst in range(BURSTS):
        reqs = {}
        for pos in range(STREAMS):
            n += 1
            sid = conn.get_next_available_stream_id()
            kind = "/missing" if pos == 0 else PATHS[n % len(PATHS)]
            if kind == "/missing":
                path = "/missing-%d-%d" % (ci, n)
            else:
                path = "%s?c=%d&n=%d" % (kind, ci, n)
            own = "own-%d-%d" % (ci, n) if n % 2 == 0 else None
            hdrs = [(b":method", b"GET"), (b":scheme", b"https" if TLS else b"http"),
                    (b":authority", b"127.0.0.1"), (b":path", path.encode())]
            if own:
                hdrs.append((b"x-request-id", own.encode()))
            conn.send_headers(sid, hdrs, end_stream=True)
            reqs[sid] = dict(burst=burst, pos=pos, path=path, own=own, body=b"", status=None,
                             echoed=None, order=0, prev=0)
        sock.sendall(conn.data_to_send())
        open_ = set(reqs)
        while open_:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed with %d streams open" % len(open_))
            raw += data
            sids, raw = frame_streams(raw)
            # the frame received before each HEADERS frame
            for t, s in sids:
                if t == 1 and s in reqs and reqs[s]["order"] == 0:
                    order += 1
                    reqs[s]["order"] = order
                    reqs[s]["prev"] = last_sid
                if s:
                    last_sid = s
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    r = reqs[ev.stream_id]
                    r["status"] = [v for k, v in ev.headers if k == b":status"][0].decode()
                    r["echoed"] = [v.decode() for k, v in ev.headers if k == b"x-request-id"]
                elif isinstance(ev, h2.events.DataReceived):
                    reqs[ev.stream_id]["body"] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    open_.discard(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    raise RuntimeError("stream %d reset" % ev.stream_id)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise RuntimeError("GOAWAY %r" % ev)
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        with lock:
            for sid, r in reqs.items():
                lines.append("%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n" % (
                    ci, r["burst"], r["pos"], sid, r["order"], r["prev"], r["status"],
                    r["path"], r["own"] or "-", ",".join(r["echoed"]) or "-",
                    hashlib.sha256(r["body"]).hexdigest(), len(r["body"])))
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


def guarded(ci):
    try:
        run(ci)
    except Exception as e:  # reported, and the exit status says so
        with lock:
            errors.append("connection %d: %r" % (ci, e))


threads = [threading.Thread(target=guarded, args=(i,)) for i in range(CONNS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(OUT, "w") as f:
    f.writelines(lines)
if errors:
    sys.stderr.write("\n".join(errors) + "\n")
    sys.exit(1)
