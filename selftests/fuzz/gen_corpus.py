#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets into selftests/fuzz/corpus/<target>/.

Every hostile case of issue #8 has a seed here; the committed files are this script's
output (run it again after adding a case). The first byte of a request/response seed is
the harness's flags byte (see fuzz_request.c / fuzz_response.c)."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# fuzz_request flags: bits 0-3 read size index, 0x10 max_header_bytes 128 KiB,
# 0x20 max_body_size 1 KiB, 0x40 256 headers, 0x80 forwarded headers off
RQ_WHOLE, RQ_BYTES, RQ_SMALL = 0x0F, 0x00, 0x06  # 1 MiB reads, 1-byte reads, 64-byte reads
RQ_BIG, RQ_LIMIT = 0x10, 0x20
# fuzz_response flags: bit 0 HTTP/1.0 client, bit 1 HEAD, bit 2 1.0 keep-alive,
# bits 3-6 read size index, 0x80 head limit 128 KiB
RS_11, RS_10, RS_HEAD = 0x00, 0x01, 0x02


def chunked(*chunks, ext=b"", trailers=b""):
    out = b""
    for c in chunks:
        out += b"%x%s\r\n%s\r\n" % (len(c), ext, c)
    return out + b"0\r\n" + trailers + b"\r\n"


SMUGGLED = b"GET /internal-only HTTP/1.1\r\nHost: x\r\n\r\n"

REQUESTS = {
    "pipelined_gets": b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n" * 3,
    "post_cl_then_get": b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    "chunked_ext_trailer": b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", b"defgh", ext=b";name=value;q=\"x y\"", trailers=b"X-Checksum: 1\r\n")
    + b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    "conn_nominates_cl": b"POST /public HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Content-Length\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(SMUGGLED), SMUGGLED),
    "conn_nominates_te": b"POST /public HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Transfer-Encoding\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + chunked(SMUGGLED),
    "conn_close_host": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close, Host\r\n\r\n",
    "trailer_forbidden": b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"data", trailers=b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n"
              b"X-Checksum: 1\r\nCookie: a=b\r\nIf-Match: x\r\nProxy-Authorization: y\r\n")
    + b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    # llhttp itself refuses framing fields in trailers; these are the ones it passes on
    "trailer_forbidden_kept": b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"data", trailers=b"Host: evil\r\nX-Checksum: 1\r\nCookie: a=b\r\nIf-Match: x\r\n"
              b"Proxy-Authorization: y\r\nAuthorization: z\r\nConnection: close\r\nExpect: 100-continue\r\n"
              b"Trailer: X\r\nTE: trailers\r\nUpgrade: h2c\r\nMax-Forwards: 1\r\nRange: bytes=0-\r\n")
    + b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    "chunk_ext_5k": b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"x", ext=b";" + b"e" * 5000),
    "chunk_ext_100k": b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"x", ext=b";e=" + b"v" * 100000),
    "chunk_ext_many": b"POST /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(*([b"x"] * 40), ext=b";e=" + b"v" * 3000),
    "target_0xff": b"GET /" + b"\xff" * 1000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    "rl_two_spaces": b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
    "rl_two_spaces_2": b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
    "rl_http09": b"GET /\r\n\r\n",
    "rl_http20": b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    "rl_http12": b"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
    "rl_http30": b"GET / HTTP/3.0\r\nHost: h\r\n\r\n",
    "rl_connect": b"CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n",
    "rl_options_star": b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    "rl_absolute": b"GET http://other:81/p?q HTTP/1.1\r\nHost: h\r\n\r\n"
    b"GET http://other?q HTTP/1.1\r\nHost: h\r\n\r\n",
    "rl_tab": b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "http10_keepalive": b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"
    b"GET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n",
    "cl_te": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abcd"),
    "te_cl": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
    + chunked(b"abcd"),
    "cl_dup_same": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl_dup_diff": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl_list": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc",
    "te_identity": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
    + chunked(b"ab"),
    "te_not_chunked": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\nab",
    "te_http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"ab"),
    "obs_fold": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n",
    "obs_fold_cl": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 3\r\n\r\nabc",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: h\n\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    "bare_cr": b"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
    "nul_value": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    "ctl_value": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01\x7fb\r\n\r\n",
    "no_host": b"GET / HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "expect_continue": b"POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "upgrade": b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes",
    "xff_existing": b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n"
    b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\r\n",
    "hop_by_hop": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-a, te, keep-alive\r\nX-A: 1\r\nTE: trailers\r\n"
    b"Keep-Alive: timeout=5\r\nProxy-Connection: close\r\nTrailer: X-Checksum\r\n\r\n",
    "chunk_size_bad": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    "chunk_size_overflow": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"10000000000000003\r\nabc\r\n0\r\n\r\n",
    "chunk_lf_only": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
    "cl_huge": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "cl_cut": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nshort",
}
# (flags, data) variants beyond the default whole-read one
REQ_FLAGS = {
    "pipelined_gets": [RQ_BYTES, RQ_SMALL],
    "chunked_ext_trailer": [RQ_BYTES, RQ_SMALL, RQ_WHOLE | 0x80],
    "conn_nominates_cl": [RQ_SMALL],
    "trailer_forbidden": [RQ_SMALL, RQ_BYTES],
    "trailer_forbidden_kept": [RQ_SMALL, RQ_BYTES],
    "chunk_ext_many": [RQ_WHOLE | RQ_LIMIT],
    "chunk_ext_100k": [0x0B],
}
REQ_BIG = {
    # name "Content-Length" + 65,536 x: 65,550 bytes, 14 modulo 2^16
    "name_65536": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length" + b"x" * 65536
    + b": 40\r\n\r\n" + SMUGGLED,
    "value_100k": b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * 100000 + b"\r\n\r\n",
    "name_5000": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"N" * 5000 + b": v\r\n\r\n",
    "many_headers": b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(300))
    + b"\r\n",
}

RESPONSES = {
    "cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "chunked_ext_trailer": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", b"de", ext=b";a=b;c=\"d e\"", trailers=b"X-Checksum: 9\r\n"),
    "chunked_forbidden_trailers": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", trailers=b"Content-Length: 99\r\nSet-Cookie: a=b\r\nX-Ok: 1\r\n"
              b"Transfer-Encoding: chunked\r\nWWW-Authenticate: Basic\r\n"),
    "chunked_forbidden_trailers_kept": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", trailers=b"Set-Cookie: a=b\r\nX-Ok: 1\r\nWWW-Authenticate: Basic\r\n"
              b"Location: /x\r\nVary: *\r\nDate: now\r\nContent-Type: text/html\r\nConnection: close\r\n")
    + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX",
    "early_hints": b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "interim_with_cl": b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "no_content_cl": b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    "not_modified_te": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    "close_delimited": b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nbody until close",
    "conn_nominates_cl": b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nXX",
    "conn_nominates_te": b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"hello"),
    "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc"),
    "cl_dup": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "chunk_ext_100k": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"x", ext=b";e=" + b"v" * 100000),
    "chunk_ext_5k": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"x", b"y", ext=b";" + b"e" * 5000),
    "garbage_status": b"HTTP/1.1 2OO OK\r\n\r\n",
    "garbage": b"\x00\xffnot http at all\r\n\r\n",
    "switching_protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "cut_mid_body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part",
    "cut_mid_chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n",
    "http10_upstream": b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "http10_close": b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    "ctl_value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "status_999": b"HTTP/1.1 999 Odd\r\nContent-Length: 1\r\n\r\nx",
    "te_gzip": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
}
RESP_FLAGS = {  # extra flags per seed: all get 1.1, 1.0 and HEAD variants
    "chunked_ext_trailer": [0x08 * 0, 0x08 * 3 | RS_10],
    "early_hints": [0x08 * 0 | RS_10, 0x08 * 6],
}

CONFIGS = {
    "minimal.yaml": b"listeners:\n  - address: \":8080\"\n    routes:\n      - upstream: u\n"
    b"upstreams:\n  u:\n    servers:\n      - address: 127.0.0.1:9001\n",
    "nest_10k_seq.yaml": b"a: " + b"[" * 10000 + b"]" * 10000 + b"\n",
    "nest_10k_map.yaml": b"a: " + b"{a: " * 10000 + b"}" * 10000 + b"\n",
    "nest_block.yaml": b"".join(b"  " * i + b"k%d:\n" % i for i in range(250)),
    "anchors.yaml": b"a: &a [1, 2]\nb: &b [*a, *a]\nc: [*b, *b, *b]\nlisteners: *a\n",
    "two_docs.yaml": b"workers: 1\n---\nworkers: 2\n",
    "bad_utf8.yaml": b"log: {level: \"\xff\xfe\"}\n",
    "types.yaml": b"workers: -1\nlimits: {max_header_bytes: 99999999999999999999, max_body_size: 1x}\n"
    b"timeouts: {client_header: 5q}\n",
}
with open(os.path.join(os.path.dirname(HERE), "..", "examples", "sluice.yaml"), "rb") as f:
    CONFIGS["example.yaml"] = f.read()

ADMIN = {
    "healthz": b"\x00GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "all_gets": b"\x00" + b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in
                                    (b"/readyz", b"/status", b"/workers", b"/upstreams", b"/metrics")),
    "reload": b"\x00POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "stall": b"\x00POST /debug/stall?worker=1&ms=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "stall_bad": b"\x00POST /debug/stall?worker=99999999999999999999&ms=-1&ms=2 HTTP/1.1\r\n\r\n",
    "method_405": b"\x00DELETE /reload HTTP/1.1\r\nHost: x\r\n\r\n",
    "token_ok": b"\x01GET /status HTTP/1.1\r\nAuthorization: Bearer   fuzz-token\r\n\r\n",
    "token_bad": b"\x01GET /status HTTP/1.1\r\nAuthorization: bearer fuzz-tokenX\r\n\r\n",
    "token_none": b"\x01GET /metrics HTTP/1.1\r\n\r\n",
    "absolute_uri": b"\x00GET http://x/healthz?a=%zz#f HTTP/1.1\r\n\r\n",
    "big_header": b"\x00GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    "chunked_body": b"\x00POST /reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    + chunked(b"abc", ext=b";x=y"),
    "http10": b"\x00GET /workers HTTP/1.0\r\n\r\n",
}


# Cases that still fail on main (reported to the lead): written to crashes/ instead of the
# corpus, so that the smoke run of `make test` stays green until the fix lands. Drop a
# name from here in the commit that fixes it.
PENDING = set()  # chunk_ext_5k: 897345e, status_999: 3e7339c


def write(target, name, data):
    if name.split(".")[0] in PENDING:
        d = os.path.join(HERE, "crashes")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "%s-%s" % (target, name)), "wb") as f:
            f.write(data)
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for name, data in REQUESTS.items():
        write("request", name, bytes([RQ_WHOLE]) + data)
        for fl in REQ_FLAGS.get(name, []):
            write("request", "%s.%02x" % (name, fl), bytes([fl]) + data)
    for name, data in REQ_BIG.items():
        write("request", name, bytes([RQ_WHOLE | RQ_BIG | 0x40]) + data)
        write("request", name + ".32k", bytes([RQ_WHOLE]) + data)
    for name, data in RESPONSES.items():
        write("response", name, bytes([RS_11 | 0x08 * 15]) + data)
        write("response", name + ".http10", bytes([RS_10 | 0x08 * 15]) + data)
        write("response", name + ".head", bytes([RS_HEAD | 0x08 * 15]) + data)
        for fl in RESP_FLAGS.get(name, []):
            write("response", "%s.%02x" % (name, fl), bytes([fl]) + data)
    for name, data in CONFIGS.items():
        write("config", name, data)
    for name, data in ADMIN.items():
        write("admin", name, data)


if __name__ == "__main__":
    main()
