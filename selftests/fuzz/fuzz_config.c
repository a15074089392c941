/* libFuzzer target: the YAML config loader (sl_conf_parse(), and sl_conf_load() on a
 * memfd for inputs whose first byte is odd). Any input may be refused; none may crash,
 * leak (LeakSanitizer runs at exit and on -detect_leaks), or take long (deep nesting). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"

static struct sl_conf *load_file(const uint8_t *data, size_t size, char *err, size_t errlen)
{
	int fd = memfd_create("fuzz_config", MFD_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct sl_conf *c = NULL;
	if (write(fd, data, size) == (ssize_t)size) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		c = sl_conf_load(path, err, errlen);
	}
	close(fd);
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct sl_conf *c;
	if (size && (data[0] & 1))
		c = load_file(data, size, err, sizeof(err));
	else
		c = sl_conf_parse((const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if (c) {
		/* a config that loads is used: take and drop a reference as workers do */
		sl_conf_get(c);
		sl_conf_put(c);
		sl_conf_put(c);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		__builtin_trap(); /* a refusal always says why */
	}
	return 0;
}
