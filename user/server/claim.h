/* One daemon per listener set. Before a daemon binds a listener it makes sure no other
 * process listens there (SO_REUSEPORT would let a second sluiced join the group and take
 * its traffic); after listen() it checks that the group holds only its own sockets; a
 * lock on the BPF pin directory keeps two daemons off one set of pinned maps. */
#ifndef SL_CLAIM_H
#define SL_CLAIM_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Who holds something: pid 0 = not found (another namespace, or no permission). */
struct sl_claim_owner {
	pid_t pid;
	char comm[32]; /* its /proc/PID/comm, "" when unknown */
};

/* Bind a probe socket without SO_REUSEPORT to sa: the kernel refuses it exactly when a
 * socket listens on that address (or a wildcard covering it). 0 free, -EADDRINUSE taken
 * (owner filled when found), another -errno when the probe itself failed. */
int sl_claim_probe(const struct sockaddr *sa, socklen_t len, struct sl_claim_owner *owner);

/* After listen(): a socket listening on exactly sa whose inode is not in mine[0..n) (a
 * daemon that joined the group at the same moment). 1 found (owner filled), 0 none,
 * -errno when the table cannot be read. */
int sl_claim_foreign(const struct sockaddr *sa, socklen_t len, const int *mine, size_t n,
		     struct sl_claim_owner *owner);

/* flock(LOCK_EX | LOCK_NB) on directory dir. Returns the locked fd (O_CLOEXEC), or
 * -EWOULDBLOCK with the holder in owner, or another -errno. */
int sl_claim_lock_dir(const char *dir, struct sl_claim_owner *owner);

/* "sluiced pid 1234" / "pid 1234 (nginx)" / "another process" into buf. */
void sl_claim_describe(const struct sl_claim_owner *o, char *buf, size_t len);

#endif
