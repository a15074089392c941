/* bpffs pin directory helpers shared by every BPF user (sluicectl, the steering
 * loader): make sure bpffs is mounted, create the pin directory, open pinned maps by
 * name with a layout check. */
#ifndef SL_PIN_H
#define SL_PIN_H

#include <stddef.h>
#include <linux/types.h>

#define SL_PIN_BPFFS "/sys/fs/bpf"

/* What a pinned map must look like; zero fields are not checked. */
struct sl_pin_map_spec {
	__u32 type; /* enum bpf_map_type; 0 (UNSPEC) = any */
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
};

/* Mount bpffs at /sys/fs/bpf unless it is already there.
 * Returns 0 (was mounted), 1 (this call mounted it) or -errno. */
int sl_pin_ensure_bpffs(void);

/* 1 when this process runs in a mount namespace other than init's, where a bpffs this
 * process mounts is private and its pins vanish with the namespace (`ip netns exec`
 * does that); 0 otherwise or when unknown. */
int sl_pin_private_mntns(void);

/* sl_pin_ensure_bpffs(), then mkdir -p dir (mode 0700). 0 or -errno. */
int sl_pin_prepare(const char *dir);

/* dir/name into buf. 0 or -ENAMETOOLONG. */
int sl_pin_path(char *buf, size_t len, const char *dir, const char *name);

/* 1 if dir/name exists, else 0. */
int sl_pin_exists(const char *dir, const char *name);

/* Open the map pinned as dir/name. want may be NULL. Returns an fd (O_CLOEXEC) or
 * -ENOENT (not pinned), -EINVAL (pinned object is not a map, or not of the wanted
 * layout), another -errno. */
int sl_pin_open_map(const char *dir, const char *name, const struct sl_pin_map_spec *want);

/* Open any pinned object (program, link, map). fd or -errno. */
int sl_pin_open(const char *dir, const char *name);

/* Pin fd as dir/name, replacing what was there. 0 or -errno. */
int sl_pin_fd(int fd, const char *dir, const char *name);

/* Remove dir/name; a missing pin is not an error. 0 or -errno. */
int sl_pin_unlink(const char *dir, const char *name);

/* Remove dir if it is empty. 1 removed, 0 left (not empty or absent), -errno. */
int sl_pin_rmdir_if_empty(const char *dir);

/* Sum a per-CPU u64 value of a PERCPU map (or read a plain u64 value). 0 or -errno. */
int sl_pin_read_u64_sum(int map_fd, __u32 key, __u64 *sum);

#endif
