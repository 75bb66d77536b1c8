/* SPDX-License-Identifier: MIT */
#include "tests/harness/test_util.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdarg.h>
#include <time.h>
#include <CUnit/Basic.h>
#include <CUnit/TestRun.h>

static unsigned int skips;

void test_note_skip(void)
{
	skips++;
}

unsigned int test_skips(void)
{
	return skips;
}

void test_assert_record(bool ok, int line, const char *cond, const char *file,
			bool fatal)
{
	if (!CU_get_current_test()) {
		if (!ok)
			exit(1);
		return;
	}
	CU_assertImplementation(ok, (unsigned int)line, cond, file, "",
				fatal ? CU_TRUE : CU_FALSE);
}

void test_fail_msg(const char *file, int line, const char *func,
		   const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n  FAIL %s:%d %s: %s\n    ", file, line, func, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* An argument names a suite ("snapshot") or one of its tests
 * ("snapshot/lazy"); no argument selects everything. */
static bool arg_is(const char *arg, const char *suite, const char *test)
{
	size_t n = strlen(suite);

	if (strncmp(arg, suite, n))
		return false;
	if (!arg[n])
		return true;
	return arg[n] == '/' && (!test || !strcmp(arg + n + 1, test));
}

static bool selected(const char *suite, const char *test, int argc, char **argv)
{
	int i;

	if (argc < 2)
		return true;
	for (i = 1; i < argc; i++)
		if (arg_is(argv[i], suite, test))
			return true;
	return false;
}

int test_main(const struct test_suite *suites, unsigned int n, int argc,
	      char **argv)
{
	unsigned int i, failed_suites;
	unsigned int run, failed;
	int status;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 1; i < (unsigned int)argc; i++) {
		unsigned int j;

		for (j = 0; j < n && !arg_is(argv[i], suites[j].name, NULL);
		     j++)
			;
		if (j == n) {
			fprintf(stderr,
				"%s: no suite named in '%s'; suites:", argv[0],
				argv[i]);
			for (j = 0; j < n; j++)
				fprintf(stderr, " %s", suites[j].name);
			fprintf(stderr, "\n");
			return 2;
		}
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	for (i = 0; i < n; i++) {
		const struct test_case *tc;
		CU_pSuite s;

		if (!selected(suites[i].name, NULL, argc, argv))
			continue;
		s = CU_add_suite(suites[i].name, suites[i].init,
				 suites[i].cleanup);
		if (!s)
			return 2;
		for (tc = suites[i].cases; tc->name; tc++)
			if (selected(suites[i].name, tc->name, argc, argv) &&
			    !CU_add_test(s, tc->name, tc->fn))
				return 2;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	run = CU_get_number_of_tests_run();
	failed = CU_get_number_of_tests_failed();
	failed_suites = CU_get_number_of_suites_failed();
	printf("\n%u passed, %u failed", run - failed, failed + failed_suites);
	if (skips)
		printf(", %u skipped", skips);
	printf("\n");
	status = (failed || failed_suites || CU_get_number_of_failures()) ? 1 :
									    0;
	CU_cleanup_registry();
	return status;
}

static int count_dir(const char *path)
{
	struct dirent *d;
	DIR *dir = opendir(path);
	int n = 0;

	if (!dir)
		return -1;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - (!strcmp(path, "/proc/self/fd") ? 1 : 0);
}

void proc_census(struct proc_census *c)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];

	c->fds = count_dir("/proc/self/fd");
	c->threads = count_dir("/proc/self/task");
	c->maps = 0;
	c->memfd_maps = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		c->maps++;
		if (strstr(line, "/memfd:"))
			c->memfd_maps++;
	}
	fclose(f);
}

unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL +
	       (unsigned long long)ts.tv_nsec;
}
