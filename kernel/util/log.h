/* SPDX-License-Identifier: MIT */
#ifndef VMM_UTIL_LOG_H
#define VMM_UTIL_LOG_H

#include <stddef.h>

#include "kernel/util/compiler.h"

enum log_level {
	LOG_QUIET = -1, /* nothing at all */
	LOG_ERR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Messages above this level are dropped. Default LOG_WARN. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...) __printf(2, 3);

/*
 * Formats a one-line reason into @err (@len bytes; may be NULL) for a
 * caller to show, and returns @ret, so that "return err_printf(err, len,
 * -EINVAL, ...)" reports and fails in one step.
 */
int err_printf(char *err, size_t len, int ret, const char *fmt, ...)
	__printf(4, 5);

#define pr_err(fmt, ...) log_msg(LOG_ERR, fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...) log_msg(LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...) log_msg(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...) log_msg(LOG_DEBUG, fmt, ##__VA_ARGS__)

#endif /* VMM_UTIL_LOG_H */
