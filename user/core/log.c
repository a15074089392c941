/* Error log and access log writers. Both write whole lines with one write(2) so that
 * lines from different threads never interleave. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

enum sl_log_level sl_log_level_cur = SL_LOG_INFO;
static int err_fd = 2;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

static char err_path[4096]; /* the error log file, for sl_log_reopen(); "" = stderr */

int sl_log_open(const char *path, enum sl_log_level level)
{
	sl_log_level_cur = level;
	if (!path)
		return 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (err_fd > 2)
		close(err_fd);
	err_fd = fd;
	snprintf(err_path, sizeof(err_path), "%s", path);
	return 0;
}

void sl_log_adopt(int fd, const char *path, enum sl_log_level level)
{
	sl_log_level_cur = level;
	if (err_fd > 2)
		close(err_fd);
	err_fd = fd;
	snprintf(err_path, sizeof(err_path), "%s", path);
}

int sl_log_file_fd(const char **path)
{
	if (err_fd <= 2 || !err_path[0])
		return -1;
	*path = err_path;
	return err_fd;
}

/* The new file takes the old one's fd number with dup2(), which swaps them in one step:
 * a thread writing at that moment writes whole lines to one file or the other. */
int sl_log_reopen_fd(int fd, const char *path)
{
	int nfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (nfd < 0)
		return -errno;
	int err = dup3(nfd, fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(nfd);
	return err;
}

int sl_log_reopen(void)
{
	if (!err_path[0] || err_fd <= 2)
		return 0;
	return sl_log_reopen_fd(err_fd, err_path);
}

size_t sl_fmt_time(char *dst, size_t room, const struct timespec *ts)
{
	struct tm tm;
	gmtime_r(&ts->tv_sec, &tm);
	int n = snprintf(dst, room, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts->tv_nsec / 1000000);
	return n < 0 ? 0 : (size_t)n < room ? (size_t)n : room - 1;
}

void sl_log_emit(enum sl_log_level level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	memcpy(line, "ts=", 3);
	size_t n = 3 + sl_fmt_time(line + 3, sizeof(line) - 3, &ts);
	n += snprintf(line + n, sizeof(line) - n, " level=%s ", level_names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
	line[n++] = '\n';
	ssize_t r = write(err_fd, line, n);
	(void)r;
}

int sl_alog_open(const char *path)
{
	if (!path)
		return -1;
	if (!strcmp(path, "stdout"))
		return 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

void sl_alog_flush(struct sl_alog *a)
{
	size_t off = 0;
	while (off < a->len) {
		ssize_t r = write(a->fd, a->buf + off, a->len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break; /* a full disk loses log lines, never requests */
		off += (size_t)r;
	}
	a->len = 0;
}

char *sl_alog_reserve(struct sl_alog *a, size_t room)
{
	if (a->len + room > sizeof(a->buf))
		sl_alog_flush(a);
	return a->buf + a->len;
}

void sl_alog_commit(struct sl_alog *a, size_t n)
{
	a->len += n;
}
