/* A small HTTPS/1.1 backend for the upstream TLS tests (OpenSSL, one thread per
 * connection, keep-alive). Each response names its connection and says what the
 * handshake was:
 *   X-Conn: <n>  X-Resumed: 0|1  X-Client: <client certificate subject or "-">
 * and the body is "ok <path>\n". Lines on stdout tell the test what happened:
 *   port <p>                    listening
 *   handshake conn=<n> resumed=<0|1> version=<v>
 *   idle-sent conn=<n>          NewSessionTicket + KeyUpdate written to an idle connection
 * With --idle-events, a connection that answered a request waits for a line "poke" on
 * stdin (any connection waiting takes it), then writes a TLS 1.3 NewSessionTicket and a
 * KeyUpdate, as a server may at any time, and goes back to reading requests.
 *
 * Usage: tls_backend --cert C --key K [--client-ca CA] [--idle-events] [--tls12] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static SSL_CTX *ctx;
static int idle_events;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static unsigned int pokes, conns;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&mu);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&mu);
}

struct conn {
	int fd;
	unsigned int id;
};

static void wait_poke(void)
{
	pthread_mutex_lock(&mu);
	while (!pokes)
		pthread_cond_wait(&cv, &mu);
	pokes--;
	pthread_mutex_unlock(&mu);
}

static void *serve(void *arg)
{
	struct conn *c = arg;
	SSL *ssl = SSL_new(ctx);
	char buf[16384], out[1024], subj[256] = "-";
	size_t have = 0;
	SSL_set_fd(ssl, c->fd);
	if (SSL_accept(ssl) != 1)
		goto done;
	X509 *peer = SSL_get1_peer_certificate(ssl);
	if (peer) {
		X509_NAME_oneline(X509_get_subject_name(peer), subj, sizeof(subj));
		X509_free(peer);
	}
	say("handshake conn=%u resumed=%d version=%s\n", c->id, SSL_session_reused(ssl),
	    SSL_get_version(ssl));
	for (;;) {
		char *end;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == sizeof(buf))
				goto done;
			int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - have));
			if (n <= 0)
				goto done;
			have += (size_t)n;
		}
		char path[256] = "?";
		sscanf(buf, "%*s %255s", path);
		char body[320];
		int bl = snprintf(body, sizeof(body), "ok %s\n", path);
		int ol = snprintf(out, sizeof(out),
				  "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %u\r\n"
				  "X-Resumed: %d\r\nX-Client: %s\r\n\r\n%s",
				  bl, c->id, SSL_session_reused(ssl), subj, body);
		if (SSL_write(ssl, out, ol) != ol)
			goto done;
		size_t used = (size_t)(end + 4 - buf);
		memmove(buf, buf + used, have - used);
		have -= used;
		if (idle_events) {
			wait_poke();
			if (SSL_version(ssl) == TLS1_3_VERSION) {
				SSL_new_session_ticket(ssl);
				SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED);
				if (SSL_do_handshake(ssl) != 1)
					goto done;
			}
			say("idle-sent conn=%u\n", c->id);
		}
	}
done:
	SSL_free(ssl);
	close(c->fd);
	free(c);
	return NULL;
}

static void *read_stdin(void *arg)
{
	char line[64];
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "poke", 4)) {
			pthread_mutex_lock(&mu);
			pokes++;
			pthread_cond_broadcast(&cv);
			pthread_mutex_unlock(&mu);
		}
	}
	exit(0); /* the test is gone */
	return NULL;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *client_ca = NULL;
	int tls12 = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--cert") && i + 1 < argc)
			cert = argv[++i];
		else if (!strcmp(argv[i], "--key") && i + 1 < argc)
			key = argv[++i];
		else if (!strcmp(argv[i], "--client-ca") && i + 1 < argc)
			client_ca = argv[++i];
		else if (!strcmp(argv[i], "--idle-events"))
			idle_events = 1;
		else if (!strcmp(argv[i], "--tls12"))
			tls12 = 1;
		else {
			fprintf(stderr, "usage: %s --cert C --key K [--client-ca CA] "
					"[--idle-events] [--tls12]\n",
				argv[0]);
			return 2;
		}
	}
	if (!cert || !key)
		return 2;
	/* a client that closes first (a health check after its handshake, while the
	 * session tickets go out) must not kill the server */
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	if (tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tlsb", 4);
	if (client_ca) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (!names || SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
			ERR_print_errors_fp(stderr);
			return 1;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 128) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl)) {
		perror("listen");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, read_stdin, NULL);
	pthread_detach(t);
	say("port %u\n", ntohs(sin.sin_port));
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		struct conn *c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		pthread_mutex_lock(&mu);
		c->id = ++conns;
		pthread_mutex_unlock(&mu);
		if (pthread_create(&t, NULL, serve, c)) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
}
