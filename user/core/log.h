/* Error log (level-gated, key=value lines) and the per-worker buffered access log. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stddef.h>

/* core/ includes nothing above it: the config refers to this enum, not the reverse. */
enum sl_log_level {
	SL_LOG_DEBUG = 0,
	SL_LOG_INFO,
	SL_LOG_WARN,
	SL_LOG_ERROR,
	SL_LOG_OFF,
};

extern enum sl_log_level sl_log_level_cur;

/* fmt produces the key=value tail; the line gets "ts=... level=..." in front.
 * Level-gated before any formatting. */
#define sl_log(level, ...)                                                                         \
	do {                                                                                       \
		if ((level) >= sl_log_level_cur)                                                   \
			sl_log_emit((level), __VA_ARGS__);                                         \
	} while (0)

void sl_log_emit(enum sl_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Open the error log (NULL = stderr) and set the level. 0 or -errno. */
int sl_log_open(const char *path, enum sl_log_level level);

/* Write the error log to fd, already open for appending to path (handed over by an
 * upgrade's predecessor), and set the level. The fd is the log's from now on. */
void sl_log_adopt(int fd, const char *path, enum sl_log_level level);
/* The error log's fd when it is a file (its path in *path), else -1. */
int sl_log_file_fd(const char **path);

/* Reopen the error log file at its path (SIGUSR1, after rotation); stderr stays.
 * 0, or -errno and the old file stays in use. */
int sl_log_reopen(void);
/* Open path and make it fd (dup3), keeping the fd number every writer uses. */
int sl_log_reopen_fd(int fd, const char *path);

/* Access log: one process-wide fd, one buffer per worker (owned by its thread). */
struct sl_alog {
	int fd; /* -1 = off */
	size_t len;
	char buf[64 * 1024];
};

/* Open path ("stdout" or a file, appended). Returns fd or -errno. NULL path = off (-1). */
int sl_alog_open(const char *path);
/* Reserve room for one line; returns a pointer with at least `room` bytes, flushing first if
 * needed. */
char *sl_alog_reserve(struct sl_alog *a, size_t room);
void sl_alog_commit(struct sl_alog *a, size_t n);
void sl_alog_flush(struct sl_alog *a);

/* Format "YYYY-mm-ddTHH:MM:SS.mmmZ" for a realtime timestamp; returns bytes written (24). */
size_t sl_fmt_time(char *dst, size_t room, const struct timespec *ts);

#endif
