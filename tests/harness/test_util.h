/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_TEST_UTIL_H
#define VMM_TESTS_TEST_UTIL_H

/*
 * Assertions for CUnit tests, after the KVM selftests' test_util.h:
 * TEST_ASSERT prints the values involved; TEST_REQUIRE skips a test loudly
 * when an optional capability is missing.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/CUnit.h>

void test_fail_msg(const char *file, int line, const char *func,
		   const char *cond, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * Records one assertion. Inside a CUnit test a failure is recorded and,
 * when @fatal, leaves the test; outside one (benchmarks, tools) a failure
 * exits the process with status 1.
 */
void test_assert_record(bool ok, int line, const char *cond, const char *file,
			bool fatal);

/* Fatal: records the failure with its message and leaves the test. */
#define TEST_ASSERT(cond, fmt, ...)                                        \
	do {                                                               \
		bool ok_ = (cond);                                         \
		if (!ok_)                                                  \
			test_fail_msg(__FILE__, __LINE__, __func__, #cond, \
				      fmt, ##__VA_ARGS__);                 \
		test_assert_record(ok_, __LINE__, #cond, __FILE__, true);  \
		/* A fatal failure leaves the test (longjmp); say so. */   \
		if (!ok_)                                                  \
			abort();                                           \
	} while (0)

/* Non-fatal variant. */
#define TEST_CHECK(cond, fmt, ...)                                         \
	do {                                                               \
		bool ok_ = (cond);                                         \
		if (!ok_)                                                  \
			test_fail_msg(__FILE__, __LINE__, __func__, #cond, \
				      fmt, ##__VA_ARGS__);                 \
		test_assert_record(ok_, __LINE__, #cond, __FILE__, false); \
	} while (0)

/* Skips the rest of the test, printing what is missing. */
#define TEST_REQUIRE(cond, what)                                               \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "\n  SKIP %s: %s missing\n", __func__, \
				what);                                         \
			test_note_skip();                                      \
			return;                                                \
		}                                                              \
	} while (0)

void test_note_skip(void);
unsigned int test_skips(void);

/* A test table entry: { "name", fn }. */
struct test_case {
	const char *name;
	void (*fn)(void);
};

struct test_suite {
	const char *name;
	const struct test_case *cases;
	int (*init)(void);
	int (*cleanup)(void);
};

/*
 * Runs the suites (all, or those named in argv[1..]) with CUnit's basic
 * interface, prints the run summary and a final "N passed, N failed"
 * line, and returns the process exit status.
 */
int test_main(const struct test_suite *suites, unsigned int n, int argc,
	      char **argv);

/* Counts of open fds, mappings and threads of this process. */
struct proc_census {
	int fds;
	int maps;
	int memfd_maps; /* mappings of memfd objects (guest memory) */
	int threads;
};
void proc_census(struct proc_census *c);

/* Sanitized builds map memory on their own as they go. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* Monotonic time in nanoseconds. */
unsigned long long now_ns(void);

#endif /* VMM_TESTS_TEST_UTIL_H */
