/* Session ticket keys for TLS termination: one key ring per TLS listener, shared by
 * every worker of the process, so a ticket issued on one worker resumes on any other.
 * The main thread writes a ring (rotation, key file reload); workers only read it, inside
 * OpenSSL's ticket callback, through a sequence lock: no lock word is written per
 * handshake, so workers never bounce a shared cache line (h2o and HAProxy take a rwlock
 * there, which writes its counter on every ticket). */
#ifndef SL_TLS_TICKETS_H
#define SL_TLS_TICKETS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config-t.h"

#define SL_TICKET_RING_MAX (SL_TICKET_FILE_MAX / SL_TICKET_KEY_LEN)

/* Main thread: (re)configure listener idx's ring from its settings. Generated keys are
 * kept across reloads (tickets stay valid) unless the ring was fed from a file; a
 * key_file is read now. 0 or -errno with a reason in err (the ring is unchanged). */
int sl_tickets_setup(unsigned int idx, const struct sl_conf_listener_tls *t, char *err,
		     size_t errlen);
/* Main thread: rotate idx's ring now (generated keys: a new current key, the old one
 * still decrypts, the one before is gone; key_file: the file is read again). */
int sl_tickets_rotate(unsigned int idx, char *err, size_t errlen);
/* Main thread, periodically: rotate every ring whose interval has passed. */
void sl_tickets_tick(uint64_t now_ms);
/* Rotations done on ring idx since start (for tests and /status). */
unsigned int sl_tickets_rotations(unsigned int idx);

/* OpenSSL's ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb) for ring idx: 1 use
 * this key, 2 decrypted with an older key (issue a new ticket), 0 unknown key (full
 * handshake), -1 error. */
int sl_tickets_cb(unsigned int idx, unsigned char key_name[16], unsigned char *iv,
		  EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc);

/* Register the rotation as a background service on the main thread (before the daemon
 * starts its services). 0 or -errno. */
int sl_tls_tickets_register(void);

/* Parse a key file's bytes into n keys (unit tests, the loader). 0 or -EINVAL. */
int sl_tickets_parse(const unsigned char *buf, size_t len, unsigned int *n);

#endif
