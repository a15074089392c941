"""Assertions shared by the test files."""
from env import TIMEOUT


def assert_sluice_error(resp, code, client=None):
    """sluice's own error page: HTTP/1.1 CODE, text/plain, Content-Length, short body, and
    Connection: close followed by a close, except 404 which keeps the connection."""
    assert resp.status == code, "expected %d from sluice, got %r" % (code, resp)
    assert resp.version == "HTTP/1.1", resp.raw_head
    assert resp.header("Content-Type", "").lower().startswith("text/plain"), resp.raw_head
    assert resp.framing == "length", "error page must carry Content-Length: %r" % resp.raw_head
    assert 0 < len(resp.body) <= 1024, resp.body
    toks = resp.connection_tokens()
    if code == 404:
        assert "close" not in toks, "404 must keep the connection: %r" % resp.raw_head
        if client is not None:
            assert client.is_open(), "connection closed after 404"
    else:
        assert "close" in toks, "error %d without Connection: close: %r" % (code, resp.raw_head)
        if client is not None:
            assert client.wait_closed(TIMEOUT), "connection still open after %d" % code
            assert client.buf == b"", "bytes after the error response: %r" % client.buf[:200]

