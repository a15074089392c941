/* Session ticket key rings (see tickets.h). */
#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "sluice/service.h"
#include "sluice_common.h"
#include "tls/tickets.h"

#define KEY_WORDS (SL_TICKET_KEY_LEN / 8)

struct key {
	uint64_t w[KEY_WORDS]; /* name[16] hmac[32] aes[32] */
};

struct ring {
	/* read by workers under the sequence lock */
	atomic_uint seq;
	_Atomic uint32_t n; /* keys in use; keys[0] encrypts */
	struct key keys[SL_TICKET_RING_MAX];
	/* main thread only */
	unsigned int rotate_ms;
	uint64_t next_ms;
	char file[512]; /* "" = generated keys */
	unsigned int rotations;
	int set;
};

static struct ring rings[SL_MAX_LISTENERS];
static EVP_CIPHER *aes;
static pthread_once_t aes_once = PTHREAD_ONCE_INIT;

/* Fetched once: EVP_aes_256_cbc() in an init call fetches by name each time, which in
 * OpenSSL 3.0 takes a global lock per ticket. */
static void aes_fetch(void)
{
	aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

/* Writer side: the ring's words are stored one by one with relaxed atomics between two
 * increments of seq; a reader that saw the same even seq before and after its copy read a
 * consistent set. */
static void ring_publish(struct ring *r, const struct key *keys, unsigned int n)
{
	unsigned int s = atomic_load_explicit(&r->seq, memory_order_relaxed);
	atomic_store_explicit(&r->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	for (unsigned int i = 0; i < n; i++)
		for (unsigned int j = 0; j < KEY_WORDS; j++)
			__atomic_store_n(&r->keys[i].w[j], keys[i].w[j], __ATOMIC_RELAXED);
	atomic_store_explicit(&r->n, n, memory_order_relaxed);
	atomic_store_explicit(&r->seq, s + 2, memory_order_release);
}

static unsigned int ring_read(struct ring *r, struct key *out)
{
	for (;;) {
		unsigned int s1 = atomic_load_explicit(&r->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		unsigned int n = atomic_load_explicit(&r->n, memory_order_relaxed);
		if (n > SL_TICKET_RING_MAX)
			n = SL_TICKET_RING_MAX;
		for (unsigned int i = 0; i < n; i++)
			for (unsigned int j = 0; j < KEY_WORDS; j++)
				out[i].w[j] = __atomic_load_n(&r->keys[i].w[j], __ATOMIC_RELAXED);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&r->seq, memory_order_relaxed) == s1)
			return n;
	}
}

int sl_tickets_parse(const unsigned char *buf, size_t len, unsigned int *n)
{
	if (!len || len % SL_TICKET_KEY_LEN || len > SL_TICKET_FILE_MAX)
		return -EINVAL;
	*n = (unsigned int)(len / SL_TICKET_KEY_LEN);
	return 0;
}

static int load_file(const char *path, struct key *keys, unsigned int *n, char *err,
		     size_t errlen)
{
	unsigned char buf[SL_TICKET_FILE_MAX + 1];
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "cannot open ticket key file '%s': %s", path,
			 strerror(errno));
		return -errno;
	}
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (sl_tickets_parse(buf, len, n)) {
		snprintf(err, errlen, "ticket key file '%s' must hold 1 to %d keys of %d bytes",
			 path, SL_TICKET_RING_MAX, SL_TICKET_KEY_LEN);
		return -EINVAL;
	}
	memcpy(keys, buf, *n * SL_TICKET_KEY_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

static int new_key(struct key *k)
{
	return RAND_bytes((unsigned char *)k->w, SL_TICKET_KEY_LEN) == 1 ? 0 : -EIO;
}

static int rotate(struct ring *r, char *err, size_t errlen)
{
	struct key keys[SL_TICKET_RING_MAX];
	unsigned int n = 0;
	int rc = 0;
	if (r->file[0]) {
		rc = load_file(r->file, keys, &n, err, errlen);
	} else {
		/* the new key encrypts, the old current one still decrypts */
		struct key old[SL_TICKET_RING_MAX];
		unsigned int have = ring_read(r, old);
		keys[1] = old[0];
		OPENSSL_cleanse(old, sizeof(old));
		rc = new_key(&keys[0]);
		if (rc)
			snprintf(err, errlen, "no random bytes for a ticket key");
		n = have ? 2 : 1;
	}
	if (!rc) {
		ring_publish(r, keys, n);
		r->rotations++;
	}
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

int sl_tickets_setup(unsigned int idx, const struct sl_conf_listener_tls *t, char *err,
		     size_t errlen)
{
	if (idx >= SL_MAX_LISTENERS)
		return -EINVAL;
	struct ring *r = &rings[idx];
	const char *file = t->ticket_key_file ? t->ticket_key_file : "";
	if (strlen(file) >= sizeof(r->file)) {
		snprintf(err, errlen, "ticket key file name too long");
		return -ENAMETOOLONG;
	}
	int was_file = r->file[0] != 0;
	if (file[0]) {
		struct key keys[SL_TICKET_RING_MAX];
		unsigned int n;
		int rc = load_file(file, keys, &n, err, errlen);
		if (rc)
			return rc;
		ring_publish(r, keys, n);
		OPENSSL_cleanse(keys, sizeof(keys));
	} else if (!r->set || was_file) {
		/* generated keys outlive reloads: a reload must not cost every client its
		 * resumption */
		struct key k;
		if (new_key(&k)) {
			snprintf(err, errlen, "no random bytes for a ticket key");
			return -EIO;
		}
		ring_publish(r, &k, 1);
		OPENSSL_cleanse(&k, sizeof(k));
	}
	snprintf(r->file, sizeof(r->file), "%s", file);
	if (r->rotate_ms != t->ticket_rotate || !r->set)
		r->next_ms = 0; /* scheduled from the next tick */
	r->rotate_ms = t->ticket_rotate;
	r->set = 1;
	return 0;
}

int sl_tickets_rotate(unsigned int idx, char *err, size_t errlen)
{
	if (idx >= SL_MAX_LISTENERS || !rings[idx].set)
		return -ENOENT;
	return rotate(&rings[idx], err, errlen);
}

void sl_tickets_tick(uint64_t now_ms)
{
	char err[256];
	for (unsigned int i = 0; i < SL_MAX_LISTENERS; i++) {
		struct ring *r = &rings[i];
		if (!r->set || !r->rotate_ms)
			continue;
		if (!r->next_ms) {
			r->next_ms = now_ms + r->rotate_ms;
			continue;
		}
		if (now_ms < r->next_ms)
			continue;
		r->next_ms = now_ms + r->rotate_ms;
		if (rotate(r, err, sizeof(err)))
			sl_log(SL_LOG_ERROR,
			       "msg=\"ticket key rotation failed, old keys kept\" listener=%u "
			       "reason=\"%s\"",
			       i, err);
		else
			sl_log(SL_LOG_INFO, "msg=\"ticket keys rotated\" listener=%u source=%s", i,
			       r->file[0] ? "key_file" : "generated");
	}
}

unsigned int sl_tickets_rotations(unsigned int idx)
{
	return idx < SL_MAX_LISTENERS ? rings[idx].rotations : 0;
}

static int key_init(const struct key *k, unsigned char *iv, EVP_CIPHER_CTX *ectx,
		    EVP_MAC_CTX *hctx, int enc)
{
	const unsigned char *b = (const unsigned char *)k->w;
	OSSL_PARAM params[3];
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(b + 16), 32);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	int ok = enc ? EVP_EncryptInit_ex2(ectx, aes, b + 48, iv, NULL)
		     : EVP_DecryptInit_ex2(ectx, aes, b + 48, iv, NULL);
	return ok == 1 && EVP_MAC_CTX_set_params(hctx, params) == 1;
}

int sl_tickets_cb(unsigned int idx, unsigned char key_name[16], unsigned char *iv,
		  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
	struct key keys[SL_TICKET_RING_MAX];
	int rc = -1;
	pthread_once(&aes_once, aes_fetch);
	if (idx >= SL_MAX_LISTENERS || !aes)
		return -1;
	unsigned int n = ring_read(&rings[idx], keys);
	if (!n)
		return enc ? -1 : 0;
	if (enc) {
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(aes)) != 1)
			goto out;
		memcpy(key_name, keys[0].w, 16);
		rc = key_init(&keys[0], iv, ectx, hctx, 1) ? 1 : -1;
		goto out;
	}
	rc = 0; /* a key we do not have (rotated out, another node): full handshake */
	for (unsigned int i = 0; i < n; i++) {
		if (memcmp(key_name, keys[i].w, 16))
			continue;
		rc = key_init(&keys[i], iv, ectx, hctx, 0) ? (i == 0 ? 1 : 2) : -1;
		break;
	}
out:
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

/* Rotation is a few RAND_bytes or one small file read per interval: the main thread's
 * loop can take it (a key file on a hung network mount would block it: keep key files
 * local). */
static void tickets_tick(void *data)
{
	sl_tickets_tick(sl_mono_ns() / 1000000ull);
}

int sl_tls_tickets_register(void)
{
	struct sl_service svc = {
	    .name = "tls-ticket-keys",
	    .own_thread = 0,
	    .interval_ms = 1000,
	    .tick = tickets_tick,
	};
	return sl_service_add(&svc);
}
