/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_RUN_UTIL_H
#define VMM_TESTS_RUN_UTIL_H

/* Running the vmrun binary from tests. */

#include <stddef.h>

/*
 * Runs VMRUN_BIN with @argv (NULL-terminated, without argv[0]) and no
 * standard input; captures stdout and stderr (each up to @cap bytes,
 * NUL-terminated) and returns the exit status (128 + N for signal N).
 * Kills it after @timeout_ms. When @sig is non-zero, sends it @sig_after_ms
 * after the start.
 */
int run_vmrun(const char *const *argv, char *out, char *err, size_t cap,
	      int timeout_ms, int sig, int sig_after_ms);

#endif /* VMM_TESTS_RUN_UTIL_H */
