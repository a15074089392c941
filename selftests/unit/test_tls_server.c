/* Unit tests for user/tls/: SNI selection (exact, case, trailing dot, one-label wildcard,
 * default for unknown, overlong and missing names) and the session ticket key rings
 * (a ticket sealed under the current key opens, under the previous one opens and asks
 * for renewal, under a key two rotations old does not; key files of the wrong size are
 * refused; rings of two listeners are apart). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cmocka.h>

#include "tls/server.h"
#include "tls/tickets.h"

static void test_sni_pick(void **state)
{
	SSL_CTX *dflt = SSL_CTX_new(TLS_server_method()), *a = SSL_CTX_new(TLS_server_method()),
		*w = SSL_CTX_new(TLS_server_method());
	struct sl_tls_name names[] = {
	    {.name = "*.wild.test", .ctx = w},
	    {.name = "site.test", .ctx = a},
	    {.name = "www.site.test", .ctx = a},
	};
	struct sl_tls_srv srv = {.dflt = dflt, .names = names, .n_names = 3};
	assert_ptr_equal(sl_tls_srv_pick(&srv, "site.test"), a);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "SITE.Test"), a);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "site.test."), a);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "a.wild.test"), w);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "A.WILD.TEST"), w);
	/* one label only, and never the bare suffix */
	assert_ptr_equal(sl_tls_srv_pick(&srv, "a.b.wild.test"), dflt);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "wild.test"), dflt);
	assert_ptr_equal(sl_tls_srv_pick(&srv, ".wild.test"), dflt);
	/* a client naming the wildcard itself gets no special treatment */
	assert_ptr_equal(sl_tls_srv_pick(&srv, "*.wild.test"), w);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "nosuch.example"), dflt);
	assert_ptr_equal(sl_tls_srv_pick(&srv, NULL), dflt);
	assert_ptr_equal(sl_tls_srv_pick(&srv, ""), dflt);
	assert_ptr_equal(sl_tls_srv_pick(&srv, "."), dflt);
	char big[400];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_ptr_equal(sl_tls_srv_pick(&srv, big), dflt);
	memcpy(big + sizeof(big) - 1 - 10, ".site.test", 10);
	assert_ptr_equal(sl_tls_srv_pick(&srv, big), dflt);
	SSL_CTX_free(dflt);
	SSL_CTX_free(a);
	SSL_CTX_free(w);
}

/* Seal a ticket (as OpenSSL would: the callback with enc=1) and open it again. */
struct ticket {
	unsigned char name[16], iv[EVP_MAX_IV_LENGTH], ct[64], mac[32];
	int ctlen;
};

static int seal(unsigned int ring, struct ticket *t)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
	int rc = sl_tickets_cb(ring, t->name, t->iv, c, h, 1);
	if (rc == 1) {
		int n = 0, f = 0;
		size_t ml = 0;
		EVP_EncryptUpdate(c, t->ct, &n, (const unsigned char *)"session state", 13);
		EVP_EncryptFinal_ex(c, t->ct + n, &f);
		t->ctlen = n + f;
		EVP_MAC_init(h, NULL, 0, NULL);
		EVP_MAC_update(h, t->ct, (size_t)t->ctlen);
		EVP_MAC_final(h, t->mac, &ml, sizeof(t->mac));
	}
	EVP_MAC_CTX_free(h);
	EVP_MAC_free(mac);
	EVP_CIPHER_CTX_free(c);
	return rc;
}

/* The callback's answer for t, and whether the state decrypts and authenticates. */
static int open_ticket(unsigned int ring, struct ticket *t, int *ok)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
	unsigned char name[16], pt[80], m[32];
	memcpy(name, t->name, 16);
	int rc = sl_tickets_cb(ring, name, t->iv, c, h, 0);
	*ok = 0;
	if (rc == 1 || rc == 2) {
		int n = 0, f = 0;
		size_t ml = 0;
		EVP_MAC_init(h, NULL, 0, NULL);
		EVP_MAC_update(h, t->ct, (size_t)t->ctlen);
		EVP_MAC_final(h, m, &ml, sizeof(m));
		int dec = EVP_DecryptUpdate(c, pt, &n, t->ct, t->ctlen) == 1 &&
			  EVP_DecryptFinal_ex(c, pt + n, &f) == 1;
		*ok = dec && !memcmp(m, t->mac, 32) && n + f == 13 && !memcmp(pt, "session state", 13);
	}
	EVP_MAC_CTX_free(h);
	EVP_MAC_free(mac);
	EVP_CIPHER_CTX_free(c);
	return rc;
}

static void test_ticket_rotation(void **state)
{
	struct sl_conf_listener_tls t = {.tickets = 1, .ticket_rotate = 3600000};
	char err[256];
	int ok;
	struct ticket t0, t1, other;
	assert_int_equal(sl_tickets_setup(3, &t, err, sizeof(err)), 0);
	assert_int_equal(sl_tickets_setup(4, &t, err, sizeof(err)), 0);
	assert_int_equal(seal(3, &t0), 1);
	assert_int_equal(open_ticket(3, &t0, &ok), 1);
	assert_true(ok);
	/* another listener's ring has its own keys */
	assert_int_equal(open_ticket(4, &t0, &ok), 0);
	assert_int_equal(seal(4, &other), 1);
	assert_memory_not_equal(other.name, t0.name, 16);

	/* a reload (setup again) keeps generated keys */
	assert_int_equal(sl_tickets_setup(3, &t, err, sizeof(err)), 0);
	assert_int_equal(open_ticket(3, &t0, &ok), 1);

	assert_int_equal(sl_tickets_rotate(3, err, sizeof(err)), 0);
	assert_int_equal(open_ticket(3, &t0, &ok), 2); /* previous key: accepted, renew */
	assert_true(ok);
	assert_int_equal(seal(3, &t1), 1);
	assert_memory_not_equal(t1.name, t0.name, 16);
	assert_int_equal(sl_tickets_rotate(3, err, sizeof(err)), 0);
	assert_int_equal(open_ticket(3, &t0, &ok), 0); /* two rotations old: gone */
	assert_int_equal(open_ticket(3, &t1, &ok), 2);
	assert_true(ok);
	/* a forged name never matches; a tampered ticket fails its MAC */
	t1.ct[0] ^= 1;
	assert_int_equal(open_ticket(3, &t1, &ok), 2);
	assert_false(ok);
	assert_int_equal(sl_tickets_rotate(9, err, sizeof(err)), -ENOENT);
	assert_int_equal(sl_tickets_rotations(3), 2);
}

static void test_ticket_key_file(void **state)
{
	char path[] = "/tmp/sl-ticket-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unsigned char keys[160];
	for (unsigned int i = 0; i < sizeof(keys); i++)
		keys[i] = (unsigned char)i;
	assert_int_equal(write(fd, keys, sizeof(keys)), (int)sizeof(keys));
	close(fd);
	struct sl_conf_listener_tls t = {.tickets = 1, .ticket_rotate = 1000,
					 .ticket_key_file = path};
	char err[256];
	int ok;
	struct ticket tk;
	assert_int_equal(sl_tickets_setup(5, &t, err, sizeof(err)), 0);
	assert_int_equal(seal(5, &tk), 1);
	assert_memory_equal(tk.name, keys, 16); /* the file's first key encrypts */
	/* the operator puts a new key first: the old one still decrypts, renewing */
	unsigned char next[240];
	memset(next, 0xab, 80);
	memcpy(next + 80, keys, 160);
	FILE *f = fopen(path, "w");
	fwrite(next, 1, sizeof(next), f);
	fclose(f);
	assert_int_equal(sl_tickets_rotate(5, err, sizeof(err)), 0);
	assert_int_equal(open_ticket(5, &tk, &ok), 2);
	assert_true(ok);
	/* a file of the wrong size is refused and the keys in use stay */
	f = fopen(path, "w");
	fwrite(next, 1, 81, f);
	fclose(f);
	assert_int_not_equal(sl_tickets_rotate(5, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "80 bytes"));
	assert_int_equal(open_ticket(5, &tk, &ok), 2);
	unlink(path);
	assert_int_not_equal(sl_tickets_setup(5, &t, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "cannot open"));

	unsigned int n;
	assert_int_equal(sl_tickets_parse(keys, 0, &n), -EINVAL);
	assert_int_equal(sl_tickets_parse(keys, 79, &n), -EINVAL);
	assert_int_equal(sl_tickets_parse(keys, 160, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(sl_tickets_parse(keys, SL_TICKET_FILE_MAX + 80, &n), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sni_pick),
	    cmocka_unit_test(test_ticket_rotation),
	    cmocka_unit_test(test_ticket_key_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
