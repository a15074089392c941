/* bpffs pin directory helpers (see pin.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/pin.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

int sl_pin_ensure_bpffs(void)
{
	struct statfs st;
	if (!statfs(SL_PIN_BPFFS, &st) && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(SL_PIN_BPFFS, 0700) && errno != EEXIST)
		return -errno;
	if (mount("bpf", SL_PIN_BPFFS, "bpf", 0, "mode=0700"))
		return -errno;
	return 1;
}

static int mntns_of(const char *pid, char *buf, size_t len)
{
	char p[64];
	snprintf(p, sizeof(p), "/proc/%s/ns/mnt", pid);
	ssize_t n = readlink(p, buf, len - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return 0;
}

int sl_pin_private_mntns(void)
{
	char self[64], other[64], ppid[32];
	if (mntns_of("self", self, sizeof(self)))
		return 0;
	/* `ip netns exec` unshares the mount namespace in the process it then execs, so
	 * the parent (the shell) sits in another one; init may be unreadable in a
	 * container, the parent rarely is */
	snprintf(ppid, sizeof(ppid), "%d", (int)getppid());
	if (!mntns_of(ppid, other, sizeof(other)) && strcmp(self, other))
		return 1;
	if (!mntns_of("1", other, sizeof(other)) && strcmp(self, other))
		return 1;
	return 0;
}

int sl_pin_prepare(const char *dir)
{
	int r = sl_pin_ensure_bpffs();
	if (r < 0)
		return r;
	char p[512];
	if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0700) && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

int sl_pin_path(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sl_pin_exists(const char *dir, const char *name)
{
	char p[512];
	struct stat st;
	return !sl_pin_path(p, sizeof(p), dir, name) && !stat(p, &st);
}

int sl_pin_open(const char *dir, const char *name)
{
	char p[512];
	int r = sl_pin_path(p, sizeof(p), dir, name);
	if (r)
		return r;
	int fd = bpf_obj_get(p);
	return fd < 0 ? -errno : fd;
}

int sl_pin_open_map(const char *dir, const char *name, const struct sl_pin_map_spec *want)
{
	int fd = sl_pin_open(dir, name);
	if (fd < 0)
		return fd;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	/* a program or link pinned under that name fails here: not a map */
	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		goto bad;
	if (want && ((want->type && info.type != want->type) ||
		     (want->key_size && info.key_size != want->key_size) ||
		     (want->value_size && info.value_size != want->value_size) ||
		     (want->max_entries && info.max_entries != want->max_entries)))
		goto bad;
	return fd;
bad:
	close(fd);
	return -EINVAL;
}

int sl_pin_fd(int fd, const char *dir, const char *name)
{
	char p[512];
	int r = sl_pin_path(p, sizeof(p), dir, name);
	if (r)
		return r;
	if (unlink(p) && errno != ENOENT)
		return -errno;
	return bpf_obj_pin(fd, p) ? -errno : 0;
}

int sl_pin_unlink(const char *dir, const char *name)
{
	char p[512];
	int r = sl_pin_path(p, sizeof(p), dir, name);
	if (r)
		return r;
	return unlink(p) && errno != ENOENT ? -errno : 0;
}

int sl_pin_rmdir_if_empty(const char *dir)
{
	if (!rmdir(dir))
		return 1;
	return errno == ENOTEMPTY || errno == EEXIST || errno == ENOENT ? 0 : -errno;
}

int sl_pin_read_u64_sum(int map_fd, __u32 key, __u64 *sum)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(map_fd, &info, &len))
		return -errno;
	if (info.value_size != sizeof(__u64))
		return -EINVAL;
	int percpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY ||
		     info.type == BPF_MAP_TYPE_PERCPU_HASH ||
		     info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
	int ncpu = percpu ? libbpf_num_possible_cpus() : 1;
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	__u64 *vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	int r = bpf_map_lookup_elem(map_fd, &key, vals) ? -errno : 0;
	*sum = 0;
	for (int i = 0; !r && i < ncpu; i++)
		*sum += vals[i];
	free(vals);
	return r;
}
