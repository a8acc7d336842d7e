#!/usr/bin/python3
"""Independent HTTP/2 reference for tests/test_h2.c (Debian's python3-h2 and python3-hpack).

  h2ref.py gen NAME     prints a scenario made by python3-h2's own client and server:
                        "C <hex>" the client's bytes, "S <hex>" each chunk the server
                        wrote, "I <sid> <id or ->" the request-ID header each request sent
  h2ref.py check        reads "MFS <n>", "ORIG <hex>", "IDS <sid>=<id> ...", then any
                        number of "WIRE <hex> [<cut>,...]" lines on stdin, and prints one
                        line per WIRE: "ok", or "bad: <why>". A wire is right when it
                        parses as HTTP/2 (frame sizes within MFS, CONTINUATION rules),
                        decodes with hpack, and equals ORIG with "x-request-id: <id>"
                        appended to each final response head (first block with
                        :status >= 200 on a stream) that has none, and nothing else
                        changed. The cuts are where ORIG was split into writes: a head
                        whose last frame's flags byte and the end of its frame header
                        went out in different writes cannot get the field (reqctx
                        never saw the frame whole before its flags went out).
  h2ref.py huff <hex>... prints the Huffman coding (RFC 7541 Appendix B) of each, a line each
"""
import sys

import h2.config
import h2.connection
import h2.events
import hpack
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

HDR = b"x-request-id"


class Bad(Exception):
    pass


def frames(data, mfs):
    """The frames of a server-to-client byte stream: (type, flags, sid, payload)."""
    i, out = 0, []
    while i < len(data):
        at = i
        if len(data) - i < 9:
            raise Bad("truncated frame header at %d" % i)
        ln = int.from_bytes(data[i:i + 3], "big")
        t, fl = data[i + 3], data[i + 4]
        sid = int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF
        if ln > mfs:
            raise Bad("frame of %d bytes > %d at %d" % (ln, mfs, i))
        if len(data) - i - 9 < ln:
            raise Bad("truncated frame at %d" % i)
        out.append((t, fl, sid, data[i + 9:i + 9 + ln], at))
        i += 9 + ln
    return out


def blocks(data, mfs, where=None):
    """Reassembles header blocks and decodes them. Returns a list of records:
    ("H", sid, type, end_stream, prefix bytes, padding bytes, [(name, value)]) per
    header block (the padding and priority or promise bytes of its first frame),
    ("F", type, flags, sid, payload) for every other frame."""
    dec = hpack.Decoder()
    out, blk = [], None
    for t, fl, sid, pl, at in frames(data, mfs):
        if blk is not None:
            if t != 9 or sid != blk[1]:
                raise Bad("frame type %d on stream %d inside a header block" % (t, sid))
            blk[4] += pl
            if fl & 4:
                if where is not None:
                    where.append(at)
                out.append(finish(dec, blk))
                blk = None
            continue
        if t in (1, 5):
            pad, pre = 0, b""
            if fl & 8:
                pad, pl = pl[0], pl[1:]
            n = 4 if t == 5 else (5 if fl & 0x20 else 0)
            pre, pl = pl[:n], pl[n:]
            if pad > len(pl):
                raise Bad("padding longer than the frame")
            frag, padding = pl[:len(pl) - pad], pl[len(pl) - pad:]
            blk = [t, sid, fl & 1, pre + b"|" + padding, frag]
            if fl & 4:
                if where is not None:
                    where.append(at)
                out.append(finish(dec, blk))
                blk = None
        elif t == 9:
            raise Bad("CONTINUATION outside a header block")
        else:
            if where is not None:
                where.append(at)
            out.append(("F", t, fl, sid, pl))
    if blk is not None:
        raise Bad("header block never ends")
    return out


def finish(dec, blk):
    t, sid, es, extra, frag = blk
    try:
        fields = dec.decode(bytes(frag), raw=True)
    except Exception as e:  # hpack's own errors
        raise Bad("hpack: %r" % e)
    return ("H", sid, t, es, extra, [(bytes(n), bytes(v)) for n, v in fields])


def expected(orig, ids, mfs, cuts):
    """ORIG's records with the ID added where reqctx must add it."""
    where = []
    recs, heads = blocks(orig, mfs, where), set()
    out = []
    for r, at in zip(recs, where):
        if r[0] == "H" and r[2] == 1 and r[1] % 2 == 1 and r[1] not in heads:
            status = [v for n, v in r[5] if n == b":status"]
            if status and int(status[0]) >= 200:
                heads.add(r[1])
                missed = any(at + 5 <= c <= at + 8 for c in cuts)
                if not any(n == HDR for n, v in r[5]) and r[1] in ids and not missed:
                    r = r[:5] + (r[5] + [(HDR, ids[r[1]])],)
        out.append(r)
    return out


def check():
    mfs, orig, ids = 16384, None, {}
    for line in sys.stdin:
        word, _, rest = line.strip().partition(" ")
        if word == "MFS":
            mfs = int(rest)
        elif word == "ORIG":
            orig = bytes.fromhex(rest)
        elif word == "IDS":
            for kv in rest.split():
                k, v = kv.split("=", 1)
                ids[int(k)] = v.encode()
        elif word == "WIRE":
            wire, _, cuts = rest.partition(" ")
            want = expected(orig, ids, mfs, [int(c) for c in cuts.split(",") if c])
            try:
                got = blocks(bytes.fromhex(wire), mfs)
                if got != want:
                    for i, (a, b) in enumerate(zip(got, want)):
                        if a != b:
                            raise Bad("record %d: got %r want %r" % (i, a, b))
                    raise Bad("%d records, want %d" % (len(got), len(want)))
                print("ok")
            except Bad as e:
                print("bad: %s" % e)
            sys.stdout.flush()


def gen(name):
    cfg = dict(header_encoding=None, validate_inbound_headers=False,
               validate_outbound_headers=False, normalize_outbound_headers=False)
    cli = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **cfg))
    srv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, **cfg))
    cli.initiate_connection()
    srv.initiate_connection()
    chunks = [srv.data_to_send()]
    reqs = []

    def req(headers, body=None, rid=None):
        sid = cli.get_next_available_stream_id()
        hs = [(b":method", b"POST" if body else b"GET"), (b":scheme", b"https"),
              (b":path", b"/%d" % sid), (b":authority", b"example.com")] + headers
        if rid is not None:
            hs.append((HDR, rid))
        cli.send_headers(sid, hs, end_stream=body is None)
        if body:
            cli.send_data(sid, body, end_stream=True)
        reqs.append((sid, rid))
        return sid

    base = [(b"server", b"h2ref"), (b"content-type", b"text/plain")]
    if name == "mix":
        s1 = req([(b"user-agent", b"h2ref")], rid=b"client-1")
        s3 = req([(b"accept", b"*/*")])
        s5 = req([], rid=b"bad id")
        s7 = req([(b"content-type", b"application/grpc")], body=b"x" * 40)
        s9 = req([])
        s11 = req([(b"cookie", b"c=" + b"v" * 300)], rid=b"client-11")
        cbytes = cli.data_to_send()
        srv.receive_data(cbytes)
        chunks.append(srv.data_to_send())
        srv.send_headers(s1, [(b":status", b"200")] + base + [(b"content-length", b"5")])
        srv.send_data(s1, b"hello", end_stream=True)
        chunks.append(srv.data_to_send())
        srv.send_headers(s3, [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")])
        srv.send_headers(s3, [(b":status", b"200")] + base)
        srv.send_headers(s5, [(b":status", b"404"), (HDR, b"srv-5")] + base)
        srv.send_data(s3, b"three", end_stream=True)
        srv.send_data(s5, b"", end_stream=True)
        chunks.append(srv.data_to_send())
        srv.send_headers(s7, [(b":status", b"200"), (b"content-type", b"application/grpc")])
        srv.send_data(s7, b"y" * 30)
        srv.send_headers(s7, [(b"grpc-status", b"0")], end_stream=True)
        srv.send_headers(s9, [(b":status", b"204")] + base, end_stream=True)
        srv.send_headers(s11, [(b":status", b"302"), (b"location", b"/x")] + base,
                         end_stream=True)
        chunks.append(srv.data_to_send())
    elif name == "big":
        # a head too big for one frame: python3-h2 sends HEADERS + CONTINUATION
        s1 = req([], rid=b"client-1")
        s3 = req([])
        cbytes = cli.data_to_send()
        srv.receive_data(cbytes)
        chunks.append(srv.data_to_send())
        srv.send_headers(s1, [(b":status", b"200"), (b"set-cookie", b"k=" + b"a" * 27000)] + base,
                         end_stream=True)
        srv.send_headers(s3, [(b":status", b"200")] + base, end_stream=True)
        chunks.append(srv.data_to_send())
    else:
        raise SystemExit("unknown scenario %s" % name)
    print("C " + cbytes.hex())
    for c in chunks:
        if c:
            print("S " + c.hex())
    for sid, rid in reqs:
        print("I %d %s" % (sid, rid.decode() if rid is not None else "-"))


def huff(args):
    enc = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    for hexs in args:
        print(enc.encode(bytes.fromhex(hexs)).hex())


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    elif sys.argv[1] == "check":
        check()
    elif sys.argv[1] == "huff":
        huff(sys.argv[2:])
