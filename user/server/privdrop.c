/* Privilege drop: once the listeners are bound, the BPF programs loaded and the admin
 * socket created, sluiced switches to the config's user:/group: and keeps only the
 * capabilities named in keep_capabilities (libcap-ng does the ordered setresgid,
 * setgroups, setresuid with capabilities retained). Runs before any thread starts:
 * capabilities and the bounding set are per thread. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cap-ng.h>
#include <linux/capability.h>

#include "config/config.h"
#include "core/log.h"
#include "server/privdrop.h"

/* libcap-ng's capng_change_id() error codes (capng_change_id(3)) */
static const char *change_id_step(int rc)
{
	switch (rc) {
	case -1:
		return "capabilities not initialised";
	case -2:
		return "cannot keep capabilities across the uid change (PR_SET_KEEPCAPS)";
	case -3:
		return "setresgid failed";
	case -4:
		return "cannot drop supplementary groups";
	case -5:
		return "setresuid failed";
	case -6:
		return "cannot clear PR_SET_KEEPCAPS";
	case -7:
		return "cannot clear the bounding set";
	case -8:
		return "cannot apply the kept capabilities";
	case -9:
		return "initgroups failed";
	case -10:
		return "cannot clear the ambient set";
	default:
		return "failed";
	}
}

/* Hex mask of one Cap* line of /proc/self/status (CapEff, CapPrm, CapBnd, CapAmb). */
static int proc_caps(const char *field, uint64_t *out)
{
	char line[256];
	size_t fl = strlen(field);
	int err = -ENOENT;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, fl) && line[fl] == ':') {
			*out = strtoull(line + fl + 1, NULL, 16);
			err = 0;
			break;
		}
	fclose(f);
	return err;
}

size_t sl_priv_caps_text(uint64_t mask, char *buf, size_t len)
{
	size_t k = 0;
	buf[0] = 0;
	for (int cap = 0; cap < 64; cap++) {
		if (!(mask & (1ull << cap)))
			continue;
		const char *n = sl_conf_cap_name(cap);
		char num[16];
		if (!n) {
			snprintf(num, sizeof(num), "cap%d", cap);
			n = num;
		}
		int w = snprintf(buf + k, len - k, "%s%s", k ? "," : "", n);
		if (w < 0 || (size_t)w >= len - k)
			break;
		k += (size_t)w;
	}
	if (!k)
		snprintf(buf, len, "none");
	return k;
}

/* What the process holds now, checked against what it asked for: a drop that looks
 * done but left uid 0 or an extra capability is a failure. */
static int verify(const struct sl_conf_process *pr, char *why, size_t len)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	uint64_t eff = 0, prm = 0, amb = 0;

	if (getresuid(&ru, &eu, &su) || getresgid(&rg, &eg, &sg)) {
		snprintf(why, len, "cannot read the credentials back: %s", strerror(errno));
		return -errno;
	}
	if (ru != pr->uid || eu != pr->uid || su != pr->uid || rg != pr->gid || eg != pr->gid ||
	    sg != pr->gid) {
		snprintf(why, len,
			 "credentials after the switch are uid %u/%u/%u gid %u/%u/%u, not %u:%u",
			 ru, eu, su, rg, eg, sg, pr->uid, pr->gid);
		return -EPERM;
	}
	/* nor root's group among the supplementary ones (the config refuses a user in it;
	 * the group database may have changed since it was read) */
	int ng = getgroups(0, NULL);
	gid_t *groups = ng > 0 ? calloc((size_t)ng, sizeof(*groups)) : NULL;
	if (ng < 0 || (ng > 0 && (!groups || getgroups(ng, groups) != ng))) {
		snprintf(why, len, "cannot read the supplementary groups back: %s",
			 strerror(errno ? errno : ENOMEM));
		free(groups);
		return -EPERM;
	}
	int rootgrp = 0;
	for (int i = 0; i < ng; i++)
		rootgrp |= groups[i] == 0;
	free(groups);
	if (rootgrp) {
		snprintf(why, len, "root's group (gid 0) is among the supplementary groups");
		return -EPERM;
	}
	/* uid 0 must be out of reach for good, not just unused */
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(why, len, "the process could switch back to root");
		return -EPERM;
	}
	if (proc_caps("CapEff", &eff) || proc_caps("CapPrm", &prm)) {
		snprintf(why, len, "cannot read the capability sets back from /proc/self/status");
		return -EIO;
	}
	proc_caps("CapAmb", &amb); /* absent on kernels without ambient capabilities */
	if ((eff | prm | amb) & ~pr->keep_caps) {
		char extra[256];
		sl_priv_caps_text((eff | prm | amb) & ~pr->keep_caps, extra, sizeof(extra));
		snprintf(why, len, "capabilities still held after the drop: %s", extra);
		return -EPERM;
	}
	return 0;
}

/* The pin directory and what is pinned in it become the user's: a successor started
 * by a binary upgrade runs as the user and opens the pinned maps by path. */
static void chown_pins(const char *dir, unsigned int uid, unsigned int gid)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return;
	if (fchown(dfd, uid, gid))
		sl_log(SL_LOG_WARN,
		       "msg=\"cannot hand the pin directory to the user\" path=%s err=\"%s\"", dir,
		       strerror(errno));
	DIR *dd = fdopendir(dfd);
	if (!dd) {
		close(dfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(dd)))
		if (e->d_name[0] != '.')
			(void)fchownat(dfd, e->d_name, uid, gid, AT_SYMLINK_NOFOLLOW);
	closedir(dd);
}

/* Kept capabilities are also inheritable (set with the others above) and ambient, so that
 * a binary the daemon executes for an upgrade starts with the same set and no more. */
static int raise_ambient(uint64_t keep, char *why, size_t len)
{
	if (!keep)
		return 0;
	/* capng_change_id() leaves the inheritable set empty and ambient needs it; one
	 * capset(2) adds it (inheritable may grow within the permitted set) */
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct cd[2];
	if (syscall(SYS_capget, &h, cd)) {
		snprintf(why, len, "capget failed: %s", strerror(errno));
		return -errno;
	}
	cd[0].inheritable |= (uint32_t)keep;
	cd[1].inheritable |= (uint32_t)(keep >> 32);
	if (syscall(SYS_capset, &h, cd)) {
		snprintf(why, len, "cannot make the kept capabilities inheritable: %s",
			 strerror(errno));
		return -errno;
	}
	for (int cap = 0; cap < 64; cap++)
		if ((keep & (1ull << cap)) &&
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)cap, 0, 0)) {
			snprintf(why, len, "cannot raise %s into the ambient set: %s",
				 sl_conf_cap_name(cap), strerror(errno));
			return -errno;
		}
	return 0;
}

int sl_priv_drop(const struct sl_conf *c, const char *pin_dir, char *why, size_t len)
{
	const struct sl_conf_process *pr = &c->proc;
	uint64_t bnd = 0;
	int rc;

	if (!pr->user)
		return 0;
	capng_clear(CAPNG_SELECT_ALL);
	for (int cap = 0; cap < 64; cap++)
		if (pr->keep_caps & (1ull << cap))
			capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED,
				     (unsigned int)cap);

	if (pin_dir && geteuid() == 0)
		chown_pins(pin_dir, pr->uid, pr->gid);
	if (geteuid() == pr->uid && getuid() == pr->uid) {
		/* started as the user already (systemd User= with AmbientCapabilities=): no id
		 * change, only the capabilities the service manager handed over go */
		if (getgid() != pr->gid || getegid() != pr->gid) {
			snprintf(why, len,
				 "running as user %s but with gid %u, not %u, and no way to change "
				 "it",
				 pr->user, getgid(), pr->gid);
			return -EPERM;
		}
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) {
			snprintf(why, len, "cannot clear the ambient capabilities: %s",
				 strerror(errno));
			return -errno;
		}
		if (capng_apply(CAPNG_SELECT_CAPS)) {
			snprintf(why, len, "cannot reduce the capabilities to the kept set");
			return -EPERM;
		}
	} else {
		/* a user with a passwd entry gets its supplementary groups (one that may read
		 * the TLS keys, say); a bare uid gets none */
		uint64_t eff = 0,
			 need = (1ull << CAP_SETUID) | (1ull << CAP_SETGID) | (1ull << CAP_SETPCAP);
		proc_caps("CapEff", &eff);
		if ((eff & need) != need) {
			snprintf(
			    why, len,
			    "cannot switch to user %s (uid %u gid %u): running as uid %u without "
			    "CAP_SETUID, CAP_SETGID and CAP_SETPCAP",
			    pr->user, pr->uid, pr->gid, geteuid());
			return -EPERM;
		}
		/* the bounding set first, while CAP_SETPCAP is still held: nothing outside
		 * keep_capabilities can come back, not even through an executed file */
		for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
			if (!(pr->keep_caps & (1ull << cap)) && prctl(PR_CAPBSET_READ, cap) > 0 &&
			    prctl(PR_CAPBSET_DROP, cap)) {
				snprintf(why, len,
					 "cannot drop capability %d from the bounding set: %s", cap,
					 strerror(errno));
				return -errno;
			}
		capng_flags_t fl =
		    CAPNG_CLEAR_AMBIENT | (pr->named ? CAPNG_INIT_SUPP_GRP : CAPNG_DROP_SUPP_GRP);
		errno = 0;
		rc = capng_change_id((int)pr->uid, (int)pr->gid, fl);
		if (rc) {
			snprintf(why, len, "cannot switch to user %s (uid %u gid %u): %s (%s)",
				 pr->user, pr->uid, pr->gid, change_id_step(rc),
				 errno ? strerror(errno) : "no errno");
			return -EPERM;
		}
	}
	rc = raise_ambient(pr->keep_caps, why, len);
	if (!rc)
		rc = verify(pr, why, len);
	if (rc)
		return rc;
	char kept[256];
	sl_priv_caps_text(pr->keep_caps, kept, sizeof(kept));
	proc_caps("CapBnd", &bnd);
	sl_log(SL_LOG_INFO,
	       "msg=\"privileges dropped\" user=%s uid=%u gid=%u caps=%s bounding=%s groups=%d",
	       pr->user, pr->uid, pr->gid, kept, (bnd & ~pr->keep_caps) ? "kept" : "cleared",
	       getgroups(0, NULL));
	return 0;
}
