/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_RUN_UTIL_H
#define VMM_TESTS_RUN_UTIL_H

/* Running the vmrun binary from tests. */

#include <stdbool.h>
#include <stddef.h>

/* Called with the complete lines of standard output so far. */
typedef bool (*run_until_t)(const char *out, void *arg);

/*
 * Runs VMRUN_BIN with @argv (NULL-terminated, without argv[0]) and no
 * standard input; captures stdout and stderr (each up to @cap bytes,
 * NUL-terminated) and returns the exit status (128 + N for signal N).
 * Kills it after @timeout_ms, a deadline for a run gone wrong, never a
 * window the run is expected to fit in.
 */
int run_vmrun(const char *const *argv, char *out, char *err, size_t cap,
	      int timeout_ms);

/*
 * The same, and sends @sig once @until returns true for the output so far:
 * a test waits on the guest's progress, not on the clock.
 */
int run_vmrun_until(const char *const *argv, char *out, char *err, size_t cap,
		    int timeout_ms, int sig, run_until_t until, void *arg);

/*
 * The value of " @key=" in the last line of @s that holds @prefix (a
 * console's "GUEST IO" line, say), or ~0 if there is none.
 */
unsigned long long last_kv(const char *s, const char *prefix, const char *key);

/* A thread that sends every frame on @fd back where it came from. */
struct echo {
	int fd;
	volatile int stop;
	unsigned int frames;
};

void *echo_thread(void *arg);

#endif /* VMM_TESTS_RUN_UTIL_H */
