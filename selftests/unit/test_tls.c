/* Unit tests for user/net/tls.c: the TLS transport over a socketpair, server and client
 * mode. Hostile input first (garbage before the ClientHello, an oversize record, a peer
 * closing mid-handshake), then the write contract (iovecs flattened into records, short
 * writes reported only once sent, the retry rule), buffered reads that the fd will not
 * announce, idle checks that tell NewSessionTicket and KeyUpdate from stray bytes,
 * and client-mode name verification and resumption. Keys and certificates are made in
 * memory for each run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/tls.h"

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert, *leaf_cert;

static X509 *mkcert(EVP_PKEY *key, EVP_PKEY *signer, X509 *issuer, const char *cn, int ca)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME *n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_EXTENSION *e;
	if (ca) {
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
	} else {
		char san[128];
		snprintf(san, sizeof(san), "DNS:%s", cn);
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	}
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	X509_sign(x, signer, EVP_sha256());
	return x;
}

static int group_setup(void **state)
{
	ca_key = EVP_EC_gen("P-256");
	leaf_key = EVP_EC_gen("P-256");
	ca_cert = mkcert(ca_key, ca_key, NULL, "test-ca", 1);
	leaf_cert = mkcert(leaf_key, ca_key, ca_cert, "origin.test", 0);
	return ca_key && leaf_key && ca_cert && leaf_cert ? 0 : -1;
}

static int group_teardown(void **state)
{
	X509_free(ca_cert);
	X509_free(leaf_cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(leaf_key);
	return 0;
}

static SSL_CTX *server_ctx(int max13)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	assert_non_null(c);
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	if (!max13)
		SSL_CTX_set_max_proto_version(c, TLS1_2_VERSION);
	assert_int_equal(SSL_CTX_use_certificate(c, leaf_cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(c, leaf_key), 1);
	SSL_CTX_set_read_ahead(c, 1);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	return c;
}

static SSL_CTX *client_ctx(int verify)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	assert_non_null(c);
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	if (verify) {
		X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca_cert);
		SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	}
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	return c;
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

/* Run both handshakes until each finished or failed; returns the server's result. */
static int drive(struct sl_io *srv, struct sl_io *cli, int *cli_rc)
{
	int s = SL_TLS_AGAIN, c = SL_TLS_AGAIN;
	for (int i = 0; i < 50 && (s == SL_TLS_AGAIN || c == SL_TLS_AGAIN); i++) {
		if (s == SL_TLS_AGAIN)
			s = sl_tls_handshake(srv);
		if (c == SL_TLS_AGAIN)
			c = sl_tls_handshake(cli);
	}
	if (cli_rc)
		*cli_rc = c;
	return s;
}

struct conn {
	SSL_CTX *sctx, *cctx;
	struct sl_io srv, cli;
};

static void conn_open(struct conn *k, int max13, SSL_SESSION *resume)
{
	int sv[2], crc;
	pair(sv);
	k->sctx = server_ctx(max13);
	k->cctx = client_ctx(1);
	assert_int_equal(sl_tls_io_init(&k->srv, sv[0], k->sctx, 1), 0);
	assert_int_equal(sl_tls_io_init(&k->cli, sv[1], k->cctx, 0), 0);
	assert_int_equal(sl_tls_client_setup(&k->cli, "origin.test", "origin.test", resume), 0);
	assert_int_equal(drive(&k->srv, &k->cli, &crc), 0);
	assert_int_equal(crc, 0);
}

static void conn_close(struct conn *k)
{
	sl_io_close(&k->srv);
	sl_io_close(&k->cli);
	SSL_CTX_free(k->sctx);
	SSL_CTX_free(k->cctx);
}

/* Read everything the peer sent so far (several passes, the records may be split). */
static size_t drain(struct sl_io *io, char *buf, size_t cap)
{
	size_t got = 0;
	for (int i = 0; i < 1000 && got < cap; i++) {
		ssize_t n = sl_io_read(io, buf + got, cap - got);
		if (n > 0)
			got += (size_t)n;
		else if (n < 0 && errno == EAGAIN && !sl_io_pending(io))
			break;
		else if (n <= 0 && !(n < 0 && errno == EAGAIN))
			break;
	}
	return got;
}

/* ---- hostile input ---- */

static int server_against_raw(const void *bytes, size_t len, int close_after, char *why,
			      size_t wlen)
{
	int sv[2];
	pair(sv);
	SSL_CTX *c = server_ctx(1);
	struct sl_io srv;
	assert_int_equal(sl_tls_io_init(&srv, sv[0], c, 1), 0);
	assert_int_equal(write(sv[1], bytes, len), (ssize_t)len);
	if (close_after)
		shutdown(sv[1], SHUT_WR);
	int rc = SL_TLS_AGAIN;
	for (int i = 0; i < 5 && rc == SL_TLS_AGAIN; i++)
		rc = sl_tls_handshake(&srv);
	snprintf(why, wlen, "%s", rc < 0 ? sl_tls_why(&srv) : "");
	sl_io_close(&srv);
	close(sv[1]);
	SSL_CTX_free(c);
	return rc;
}

static void test_garbage_before_client_hello(void **state)
{
	char why[200];
	const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(server_against_raw(req, sizeof(req) - 1, 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "reason="));
	/* random bytes that look like nothing */
	unsigned char junk[64];
	for (unsigned i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	assert_int_equal(server_against_raw(junk, sizeof(junk), 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "reason="));
}

static void test_oversize_record(void **state)
{
	char why[200];
	/* a handshake record header announcing 0x7fff bytes: more than any record may hold */
	unsigned char hdr[5 + 64] = {0x16, 0x03, 0x01, 0x7f, 0xff};
	assert_int_equal(server_against_raw(hdr, sizeof(hdr), 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "reason="));
}

static void test_close_mid_handshake(void **state)
{
	/* a real ClientHello, then the client goes away before answering */
	int sv[2];
	pair(sv);
	SSL_CTX *cc = client_ctx(0);
	struct sl_io cli;
	assert_int_equal(sl_tls_io_init(&cli, sv[1], cc, 0), 0);
	assert_int_equal(sl_tls_handshake(&cli), SL_TLS_AGAIN);
	char hello[4096];
	ssize_t n = read(sv[0], hello, sizeof(hello));
	assert_true(n > 5);
	close(sv[0]);
	sl_io_close(&cli);
	SSL_CTX_free(cc);
	char why[200];
	assert_int_equal(server_against_raw(hello, (size_t)n, 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "reason="));
	/* half a ClientHello and the end: the same, not a hang */
	assert_int_equal(server_against_raw(hello, (size_t)n / 2, 1, why, sizeof(why)), -1);
	/* half a ClientHello and silence: the handshake waits (its timeout is the caller's) */
	assert_int_equal(server_against_raw(hello, (size_t)n / 2, 0, why, sizeof(why)),
			 SL_TLS_AGAIN);
}

static void test_renegotiation_refused(void **state)
{
	struct conn k;
	conn_open(&k, 0, NULL); /* TLS 1.2: renegotiation exists there */
	SSL *cs = sl_tls_ssl(&k.cli);
	SSL_clear_options(cs, SSL_OP_NO_RENEGOTIATION); /* the attacker's side may try */
	assert_int_equal(SSL_renegotiate(cs), 1);
	int rc = sl_tls_handshake(&k.cli); /* sends the new ClientHello */
	assert_true(rc == SL_TLS_AGAIN || rc == -1);
	char buf[64];
	ssize_t n = sl_io_read(&k.srv, buf, sizeof(buf));
	/* the server refuses (no_renegotiation alert) and stays usable or closes; either
	 * way no new handshake happened */
	assert_true(n < 0);
	assert_int_equal(SSL_get_state(sl_tls_ssl(&k.srv)), TLS_ST_OK);
	conn_close(&k);
}

/* ---- writes ---- */

static void test_iovecs_coalesced_into_one_record(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	char parts[100][7];
	struct iovec iov[100];
	for (int i = 0; i < 100; i++) {
		memset(parts[i], 'a' + i % 26, sizeof(parts[i]));
		iov[i].iov_base = parts[i];
		iov[i].iov_len = sizeof(parts[i]);
	}
	/* read the client side raw: the ciphertext of 700 bytes in one record is
	 * 700 + 22 (header, inner type, tag); one record per iovec would be 100 x 22 more */
	char raw[8192];
	ssize_t w = sl_io_writev(&k.srv, iov, 100);
	assert_int_equal(w, 700);
	int cfd = k.cli.fd;
	ssize_t n = recv(cfd, raw, sizeof(raw), MSG_PEEK);
	/* NewSessionTicket records from the handshake come first: find the last record */
	size_t off = 0, last = 0;
	while (off + 5 <= (size_t)n) {
		last = off;
		off += 5 + (((unsigned char)raw[off + 3] << 8) | (unsigned char)raw[off + 4]);
	}
	assert_int_equal(off, (size_t)n);
	assert_int_equal(n - (ssize_t)last, 700 + 22);
	char got[1024];
	assert_int_equal(drain(&k.cli, got, sizeof(got)), 700);
	for (int i = 0; i < 100; i++)
		assert_memory_equal(got + i * 7, parts[i], 7);
	conn_close(&k);
}

static void test_short_writes_and_retry_rule(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	int small = 4096;
	setsockopt(k.srv.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	size_t total = 300000, sent = 0, recvd = 0;
	char *src = malloc(total), *dst = malloc(total);
	for (size_t i = 0; i < total; i++)
		src[i] = (char)(i * 131 + (i >> 9));
	int eagain = 0;
	while (recvd < total) {
		if (sent < total) {
			/* two iovecs, split at an odd place, always starting at the first
			 * byte not reported yet (the retry rule) */
			size_t left = total - sent, a = left > 1001 ? 1001 : left;
			struct iovec iov[2] = {{src + sent, a}, {src + sent + a, left - a}};
			ssize_t w = sl_io_writev(&k.srv, iov, left > a ? 2 : 1);
			if (w < 0) {
				assert_int_equal(errno, EAGAIN);
				assert_true(sl_io_wants(&k.srv, EV_WRITE) & EV_WRITE);
				eagain++;
			} else {
				assert_true((size_t)w <= left);
				sent += (size_t)w;
			}
		}
		recvd += drain(&k.cli, dst + recvd, total - recvd);
	}
	assert_true(eagain > 0);
	assert_int_equal(sent, total);
	assert_memory_equal(src, dst, total);
	assert_int_equal(sl_tls_out_pending(&k.srv), 0);

	/* breaking the retry rule (presenting fewer bytes than went out unreported) is
	 * an error, not silent corruption */
	for (;;) {
		struct iovec iov = {src, 65536};
		ssize_t w = sl_io_writev(&k.srv, &iov, 1);
		if (w < 0)
			break;
	}
	assert_true(sl_tls_out_pending(&k.srv) > 0);
	struct iovec one = {src, 1};
	assert_int_equal(sl_io_writev(&k.srv, &one, 1), -1);
	assert_int_equal(errno, EINVAL);
	free(src);
	free(dst);
	conn_close(&k);
}

/* ---- reads ---- */

static void test_buffered_read_is_pending(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	char msg[3000];
	memset(msg, 'x', sizeof(msg));
	struct iovec iov = {msg, sizeof(msg)};
	assert_int_equal(sl_io_writev(&k.srv, &iov, 1), (ssize_t)sizeof(msg));
	char buf[1000];
	/* the whole record left the socket with the first read: the rest is announced by
	 * pending(), never by the fd */
	assert_int_equal(sl_io_read(&k.cli, buf, sizeof(buf)), 1000);
	assert_true(sl_io_pending(&k.cli));
	char peek;
	assert_int_equal(recv(k.cli.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), -1);
	assert_int_equal(sl_io_read(&k.cli, buf, sizeof(buf)), 1000);
	assert_int_equal(sl_io_read(&k.cli, buf, sizeof(buf)), 1000);
	assert_false(sl_io_pending(&k.cli));
	assert_int_equal(sl_io_read(&k.cli, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EAGAIN);
	/* EOF: close_notify reads as 0, as TCP's FIN does */
	assert_int_equal(sl_io_shutdown_wr(&k.srv), 0);
	assert_int_equal(sl_io_read(&k.cli, buf, sizeof(buf)), 0);
	conn_close(&k);
}

/* ---- idle pooled connections (client side) ---- */

static void test_idle_check_post_handshake_records(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	/* TLS 1.3 NewSessionTickets are waiting on the client socket now */
	char peek;
	assert_int_equal(recv(k.cli.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), 1);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	assert_int_equal(recv(k.cli.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), -1);
	/* a KeyUpdate asking for an answer: processed, answered, still alive */
	assert_int_equal(SSL_key_update(sl_tls_ssl(&k.srv), SSL_KEY_UPDATE_REQUESTED), 1);
	assert_int_equal(sl_tls_handshake(&k.srv), 0);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	/* both sides still talk after the key change */
	struct iovec iov = {"ping", 4};
	assert_int_equal(sl_io_writev(&k.cli, &iov, 1), 4);
	char buf[16];
	assert_int_equal(drain(&k.srv, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	/* application bytes nobody asked for: not reusable */
	iov.iov_base = "late";
	assert_int_equal(sl_io_writev(&k.srv, &iov, 1), 4);
	assert_int_equal(sl_io_idle_check(&k.cli), -1);
	conn_close(&k);

	conn_open(&k, 1, NULL);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	sl_io_close(&k.srv); /* close_notify + FIN */
	assert_int_equal(sl_io_idle_check(&k.cli), -1);
	sl_io_close(&k.cli);
	SSL_CTX_free(k.sctx);
	SSL_CTX_free(k.cctx);
}

/* ---- client mode ---- */

static void test_client_verification_by_name(void **state)
{
	int sv[2], crc;
	pair(sv);
	SSL_CTX *s = server_ctx(1), *c = client_ctx(1);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, sv[0], s, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, sv[1], c, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "other.test", NULL), 0);
	drive(&srv, &cli, &crc);
	assert_int_equal(crc, -1);
	assert_non_null(strstr(sl_tls_why(&cli), "certificate verify failed"));
	sl_io_close(&srv);
	sl_io_close(&cli);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

static void test_client_resumption(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	assert_false(sl_tls_resumed(&k.cli));
	assert_int_equal(sl_io_idle_check(&k.cli), 0); /* takes the tickets */
	SSL_SESSION *sess = SSL_get1_session(sl_tls_ssl(&k.cli));
	assert_non_null(sess);
	assert_true(SSL_SESSION_is_resumable(sess));
	/* a second connection to a server with the same ticket keys */
	int sv[2], crc;
	pair(sv);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, sv[0], k.sctx, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, sv[1], k.cctx, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "origin.test", sess), 0);
	assert_int_equal(drive(&srv, &cli, &crc), 0);
	assert_int_equal(crc, 0);
	assert_true(sl_tls_resumed(&cli));
	assert_true(sl_tls_resumed(&srv));
	assert_string_equal(sl_tls_version(&cli), "TLSv1.3");
	SSL_SESSION_free(sess);
	sl_io_close(&srv);
	sl_io_close(&cli);
	conn_close(&k);
}

/* ---- hostile peers and careless callers ---- */

/* The client's Finished and its first request often arrive in one segment: the read that
 * ends the handshake takes both off the socket, so the fd will not announce the request. */
static void test_request_read_with_the_finished_is_pending(void **state)
{
	int sv[2];
	pair(sv);
	SSL_CTX *s = server_ctx(1), *c = client_ctx(1);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, sv[0], s, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, sv[1], c, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "origin.test", NULL), 0);
	assert_int_equal(sl_tls_handshake(&cli), SL_TLS_AGAIN); /* ClientHello */
	assert_int_equal(sl_tls_handshake(&srv), SL_TLS_AGAIN); /* ServerHello .. Finished */
	assert_int_equal(sl_tls_handshake(&cli), 0);		/* client Finished */
	struct iovec iov = {"GET / HTTP/1.1\r\n\r\n", 18};
	assert_int_equal(sl_io_writev(&cli, &iov, 1), 18); /* right behind it */
	assert_int_equal(sl_tls_handshake(&srv), 0);
	char peek;
	assert_int_equal(recv(srv.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), -1);
	/* the request is with OpenSSL now: only pending() can say so */
	assert_true(sl_io_pending(&srv));
	char buf[64];
	assert_int_equal(sl_io_read(&srv, buf, sizeof(buf)), 18);
	assert_memory_equal(buf, "GET / HTTP/1.1\r\n\r\n", 18);
	sl_io_close(&srv);
	sl_io_close(&cli);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

/* shutdown(SHUT_WR) may be called twice on raw TCP; on TLS a second call must not read
 * (SSL_shutdown waiting for the peer's close_notify discards its application data) */
static void test_shutdown_wr_twice_keeps_peer_data(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	assert_int_equal(sl_io_shutdown_wr(&k.srv), 0);
	/* a half-closed tunnel: the other side still talks */
	struct iovec iov = {"after-fin", 9};
	assert_int_equal(sl_io_writev(&k.cli, &iov, 1), 9);
	assert_int_equal(sl_io_shutdown_wr(&k.srv), 0);
	char buf[32];
	assert_int_equal(drain(&k.srv, buf, sizeof(buf)), 9);
	assert_memory_equal(buf, "after-fin", 9);
	conn_close(&k);
}

/* A peer that never reads and keeps asking for KeyUpdates: each answer is ciphertext the
 * socket refuses; it must not pile up without bound in the connection's memory. */
static void test_key_update_flood_is_bounded(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	int small = 4096;
	setsockopt(k.srv.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	SSL *attacker = sl_tls_ssl(&k.cli);
	size_t most = 0;
	int failed = 0;
	char buf[64];
	for (int i = 0; i < 40000 && !failed; i++) {
		assert_int_equal(SSL_key_update(attacker, SSL_KEY_UPDATE_REQUESTED), 1);
		if (sl_tls_handshake(&k.cli) != 0)
			break;
		if (i % 64 == 0) {
			ssize_t n = sl_io_read(&k.srv, buf, sizeof(buf));
			if (n < 0 && errno != EAGAIN) {
				assert_int_equal(errno, ENOBUFS);
				failed = 1;
			}
			size_t p = sl_tls_out_pending(&k.srv);
			if (p > most)
				most = p;
		}
	}
	assert_true(failed);
	assert_true(most <= 4 * (SL_TLS_WRITE_MAX + 8192));
	conn_close(&k);
}

/* Records nobody reads as data (KeyUpdate without a request for an answer) keep coming:
 * one read must do a bounded amount of work and return to the loop, as a read() of raw
 * TCP does, however fast the peer refills the socket. */
static void test_read_of_handshake_records_is_bounded(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	SSL *attacker = sl_tls_ssl(&k.cli);
	int i;
	for (i = 0; i < 4000; i++) { /* ~27 bytes each, queued, then sent together */
		assert_int_equal(SSL_key_update(attacker, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		assert_int_equal(SSL_do_handshake(attacker), 1);
	}
	assert_int_equal(sl_tls_handshake(&k.cli), 0);
	assert_int_equal(sl_tls_out_pending(&k.cli), 0);
	char buf[64], peek;
	assert_int_equal(sl_io_read(&k.srv, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EAGAIN);
	/* one read-ahead buffer (16 KB) processed, the rest still announced by the fd */
	assert_int_equal(recv(k.srv.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), 1);
	for (i = 0; i < 100 && recv(k.srv.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 1; i++)
		assert_int_equal(sl_io_read(&k.srv, buf, sizeof(buf)), -1);
	assert_true(i >= 1 && i < 100);
	/* and the connection is intact */
	struct iovec iov = {"still", 5};
	assert_int_equal(sl_io_writev(&k.cli, &iov, 1), 5);
	assert_int_equal(drain(&k.srv, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "still", 5);
	conn_close(&k);
}

/* A write that met an unfinished handshake waits for EV_READ; once a read finished the
 * handshake, the write may go: wants() must not keep asking for EV_READ (TLS 1.2: the
 * server has nothing more to send, that wait would never end). */
static void test_wants_write_after_read_finished_handshake(void **state)
{
	int sv[2];
	pair(sv);
	SSL_CTX *s = server_ctx(0), *c = client_ctx(1);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, sv[0], s, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, sv[1], c, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "origin.test", NULL), 0);
	struct iovec iov = {"GET", 3};
	assert_int_equal(sl_io_writev(&cli, &iov, 1), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(sl_io_wants(&cli, EV_WRITE), EV_READ);
	char b[16];
	for (int i = 0; i < 10 && !SSL_is_init_finished(sl_tls_ssl(&cli)); i++) {
		sl_tls_handshake(&srv);
		assert_int_equal(sl_io_read(&cli, b, sizeof(b)), -1);
		assert_int_equal(errno, EAGAIN);
	}
	assert_true(SSL_is_init_finished(sl_tls_ssl(&cli)));
	assert_int_equal(sl_tls_handshake(&srv), 0);
	char peek;
	assert_int_equal(recv(cli.fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT), -1);
	assert_true(sl_io_wants(&cli, EV_WRITE) & EV_WRITE);
	assert_int_equal(sl_io_writev(&cli, &iov, 1), 3);
	sl_io_close(&srv);
	sl_io_close(&cli);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

/* Client mode (an upstream): a server's HelloRequest must not start a new handshake on
 * a pooled connection (renegotiation is refused whatever the caller's context says). */
static void test_client_refuses_renegotiation(void **state)
{
	struct conn k;
	conn_open(&k, 0, NULL);
	SSL *ss = sl_tls_ssl(&k.srv);
	SSL_clear_options(ss, SSL_OP_NO_RENEGOTIATION);
	assert_int_equal(SSL_renegotiate(ss), 1);
	sl_tls_handshake(&k.srv); /* HelloRequest */
	assert_int_equal(sl_io_idle_check(&k.cli), 0); /* refused with a warning: still usable */
	assert_false(SSL_renegotiate_pending(sl_tls_ssl(&k.cli)));
	char peek[8];
	ssize_t n = recv(k.srv.fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
	/* a new ClientHello would be a handshake record (0x16) */
	assert_false(n > 0 && peek[0] == 0x16);
	conn_close(&k);
}

/* The thread's error queue holds what another connection or module left; a socket error
 * on this one must be named as such, not after that stale entry. */
static void test_stale_error_queue_not_blamed(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	assert_int_equal(sl_io_idle_check(&k.cli), 0);
	static char big[65536];
	struct iovec iov = {big, sizeof(big)};
	while (sl_io_writev(&k.srv, &iov, 1) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	assert_true(sl_tls_out_pending(&k.srv) > 0); /* ciphertext kept for the next call */
	shutdown(k.cli.fd, SHUT_RDWR);		      /* the peer is gone: that send fails */
	ERR_raise(ERR_LIB_SSL, SSL_R_NO_SHARED_CIPHER); /* left by someone else */
	assert_int_equal(sl_io_writev(&k.srv, &iov, 1), -1);
	assert_int_equal(errno, EPIPE);
	assert_null(strstr(sl_tls_why(&k.srv), "no shared cipher"));
	ERR_clear_error();
	conn_close(&k);
}

/* The handshake and the first bytes with a peer that sends one byte at a time. */
static void relay_byte(int from, int to)
{
	char c;
	if (read(from, &c, 1) == 1)
		assert_int_equal(write(to, &c, 1), 1);
}

static void test_one_byte_at_a_time(void **state)
{
	int a[2], b[2];
	pair(a);
	pair(b);
	SSL_CTX *s = server_ctx(1), *c = client_ctx(1);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, b[0], s, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, a[0], c, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "origin.test", NULL), 0);
	int sr = SL_TLS_AGAIN, cr = SL_TLS_AGAIN;
	for (int i = 0; i < 200000 && (sr || cr); i++) {
		if (cr)
			cr = sl_tls_handshake(&cli);
		if (sr)
			sr = sl_tls_handshake(&srv);
		assert_true(sr >= 0 && cr >= 0);
		relay_byte(a[1], b[1]);
		relay_byte(b[1], a[1]);
	}
	assert_int_equal(sr, 0);
	assert_int_equal(cr, 0);
	struct iovec iov = {"hello", 5};
	assert_int_equal(sl_io_writev(&cli, &iov, 1), 5);
	char buf[16];
	size_t got = 0;
	for (int i = 0; i < 10000 && got < 5; i++) {
		relay_byte(a[1], b[1]);
		relay_byte(b[1], a[1]);
		ssize_t n = sl_io_read(&srv, buf + got, sizeof(buf) - got);
		if (n > 0)
			got += (size_t)n;
		else
			assert_true(n < 0 && errno == EAGAIN);
	}
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "hello", 5);
	sl_io_close(&srv);
	sl_io_close(&cli);
	close(a[1]);
	close(b[1]);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

/* The write contract under random iovec layouts, a growing stream and a reader that
 * takes random amounts: every byte once, in order. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(uint32_t n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

static void test_write_contract_random(void **state)
{
	struct conn k;
	conn_open(&k, 1, NULL);
	int small = 8192;
	setsockopt(k.srv.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	size_t total = 3 << 20, avail = 0, sent = 0, recvd = 0;
	char *src = malloc(total), *dst = malloc(total);
	for (size_t i = 0; i < total; i++)
		src[i] = (char)(i * 7 + (i >> 11));
	for (int step = 0; recvd < total && step < 2000000; step++) {
		if (avail < total && rnd(3) == 0) {
			size_t add = rnd(40000);
			avail = avail + add > total ? total : avail + add;
		}
		if (sent < avail && rnd(2) == 0) {
			struct iovec iov[9];
			int n = 0;
			size_t at = sent;
			while (at < avail && n < 9) {
				size_t len = n == 8 ? avail - at : rnd(3) == 0 ? 0 : rnd(30000);
				if (len > avail - at)
					len = avail - at;
				iov[n].iov_base = src + at;
				iov[n++].iov_len = len;
				at += len;
			}
			ssize_t w = sl_io_writev(&k.srv, iov, n);
			if (w < 0)
				assert_int_equal(errno, EAGAIN);
			else
				sent += (size_t)w;
			assert_true(sent <= avail);
		}
		if (rnd(2) == 0) {
			size_t want = 1 + rnd(20000);
			if (want > total - recvd)
				want = total - recvd;
			ssize_t n = sl_io_read(&k.cli, dst + recvd, want);
			if (n > 0)
				recvd += (size_t)n;
			else
				assert_true(n < 0 && errno == EAGAIN);
		}
	}
	assert_int_equal(recvd, total);
	assert_memory_equal(src, dst, total);
	free(src);
	free(dst);
	conn_close(&k);
}

/* A backend's stray response whose record is split across segments: when the idle check
 * runs only its start has come. Raw TCP calls any byte stray; a partial record must be
 * too, or the rest becomes the answer to the next request sent on the connection. */
static void relay_all(int from, int to)
{
	char x[65536];
	ssize_t n;
	while ((n = read(from, x, sizeof(x))) > 0)
		assert_int_equal(write(to, x, (size_t)n), n);
}

static void test_idle_check_partial_stray_record(void **state)
{
	int a[2], b[2];
	pair(a);
	pair(b);
	SSL_CTX *s = server_ctx(1), *c = client_ctx(1);
	struct sl_io srv, cli;
	assert_int_equal(sl_tls_io_init(&srv, b[0], s, 1), 0);
	assert_int_equal(sl_tls_io_init(&cli, a[0], c, 0), 0);
	assert_int_equal(sl_tls_client_setup(&cli, "origin.test", "origin.test", NULL), 0);
	int sr = SL_TLS_AGAIN, cr = SL_TLS_AGAIN;
	for (int i = 0; i < 50 && (sr || cr); i++) {
		if (cr)
			cr = sl_tls_handshake(&cli);
		if (sr)
			sr = sl_tls_handshake(&srv);
		relay_all(a[1], b[1]);
		relay_all(b[1], a[1]);
	}
	assert_int_equal(sr, 0);
	assert_int_equal(cr, 0);
	assert_int_equal(sl_io_idle_check(&cli), 0); /* the tickets */
	const char stray[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!";
	struct iovec iov = {(void *)stray, sizeof(stray) - 1};
	assert_int_equal(sl_io_writev(&srv, &iov, 1), (ssize_t)sizeof(stray) - 1);
	char x[512];
	ssize_t n = read(b[1], x, sizeof(x));
	assert_true(n > 10);
	assert_int_equal(write(a[1], x, 10), 10); /* the first segment only */
	assert_int_equal(sl_io_idle_check(&cli), -1);
	sl_io_close(&srv);
	sl_io_close(&cli);
	close(a[1]);
	close(b[1]);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_garbage_before_client_hello),
	    cmocka_unit_test(test_oversize_record),
	    cmocka_unit_test(test_close_mid_handshake),
	    cmocka_unit_test(test_renegotiation_refused),
	    cmocka_unit_test(test_iovecs_coalesced_into_one_record),
	    cmocka_unit_test(test_short_writes_and_retry_rule),
	    cmocka_unit_test(test_buffered_read_is_pending),
	    cmocka_unit_test(test_idle_check_post_handshake_records),
	    cmocka_unit_test(test_client_verification_by_name),
	    cmocka_unit_test(test_client_resumption),
	    cmocka_unit_test(test_request_read_with_the_finished_is_pending),
	    cmocka_unit_test(test_shutdown_wr_twice_keeps_peer_data),
	    cmocka_unit_test(test_key_update_flood_is_bounded),
	    cmocka_unit_test(test_read_of_handshake_records_is_bounded),
	    cmocka_unit_test(test_wants_write_after_read_finished_handshake),
	    cmocka_unit_test(test_client_refuses_renegotiation),
	    cmocka_unit_test(test_stale_error_queue_not_blamed),
	    cmocka_unit_test(test_one_byte_at_a_time),
	    cmocka_unit_test(test_write_contract_random),
	    cmocka_unit_test(test_idle_check_partial_stray_record),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
