/* The access log line of a request (proxy/access_log.c). */
#ifndef SL_ACCESS_LOG_H
#define SL_ACCESS_LOG_H

struct sl_alog;
struct sl_session;

/* Append the line of s's request to the worker's access log buffer: at most 4096 bytes
 * with its newline, non-printable bytes escaped, over-long fields cut with "...". */
void sl_access_log_write(struct sl_alog *alog, struct sl_session *s);

#endif
