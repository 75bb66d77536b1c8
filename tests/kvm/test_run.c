/* SPDX-License-Identifier: MIT */
/* vmrun run end to end: kernels of each boot protocol, exit codes, bad input. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP 65536

static char out[CAP], err[CAP];

#define RUN(timeout, ...)                                       \
	({                                                      \
		const char *const a_[] = { __VA_ARGS__, NULL }; \
		run_vmrun(a_, out, err, CAP, timeout);          \
	})

static void test_run_multiboot_poweroff(void)
{
	int rc = RUN(120000, "run", "--kernel", GUEST_DIR "/hello_mb.bin",
		     "--cmdline", "mb-args 1 2 3", "--mem", "64M");

	TEST_ASSERT(rc == 0, "exit %d, stderr: %s", rc, err);
	TEST_ASSERT(strstr(out, "hello from multiboot: mb-args 1 2 3\n"),
		    "console: '%s'", out);
}

static void test_run_pvh_poweroff(void)
{
	int rc = RUN(120000, "run", "--kernel", GUEST_DIR "/hello_pvh.elf",
		     "--cmdline", "pvh-args", "--mem", "5G", "--cpus", "2");

	TEST_ASSERT(rc == 0, "exit %d, stderr: %s", rc, err);
	TEST_ASSERT(strstr(out, "hello from pvh: pvh-args\n"), "console: '%s'",
		    out);
}

static void test_run_console_file(void)
{
	char path[] = "/tmp/vmrun-console-XXXXXX", buf[256] = { 0 };
	char spec[64];
	int fd = mkstemp(path), rc;
	ssize_t n;

	TEST_ASSERT(fd >= 0, "mkstemp");
	close(fd);
	snprintf(spec, sizeof(spec), "file:%s", path);
	rc = RUN(120000, "run", "--kernel", GUEST_DIR "/hello_mb.bin",
		 "--cmdline", "to-file", "--console", spec);
	TEST_ASSERT(rc == 0, "exit %d, stderr: %s", rc, err);
	TEST_ASSERT(!strstr(out, "hello"), "console leaked to stdout: %s", out);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	TEST_ASSERT(n > 0 && strstr(buf, "hello from multiboot: to-file"),
		    "console file holds '%s'", buf);
}

static void test_run_triple_fault_exit_code(void)
{
	int rc = RUN(120000, "run", "--kernel", GUEST_DIR "/crash_mb.bin");

	TEST_ASSERT(rc == 4, "exit %d (want 4), stderr: %s", rc, err);
	TEST_ASSERT(strstr(err, "triple fault"), "stderr: %s", err);
}

static void test_run_guest_reset_exit_code(void)
{
	int rc = RUN(120000, "run", "--kernel", GUEST_DIR "/reset_mb.bin",
		     "--cmdline", "then-reset");

	TEST_ASSERT(rc == 3, "exit %d (want 3), stderr: %s", rc, err);
	TEST_ASSERT(strstr(out, "then-reset") && strstr(err, "reset"),
		    "console: %s stderr: %s", out, err);
}

/* Writes @len bytes of @data to a temporary file; returns its path. */
static const char *tmp_kernel(const void *data, size_t len)
{
	static char path[64];
	int fd;

	strcpy(path, "/tmp/vmrun-kernel-XXXXXX");
	fd = mkstemp(path);
	TEST_ASSERT(fd >= 0, "mkstemp");
	TEST_ASSERT(write(fd, data, len) == (ssize_t)len, "write");
	close(fd);
	return path;
}

static void expect_bad_kernel(const void *data, size_t len, const char *what)
{
	const char *k = tmp_kernel(data, len);
	int rc = RUN(120000, "run", "--kernel", k);

	unlink(k);
	TEST_ASSERT(rc == 2, "%s: exit %d (want 2), stderr: %s", what, rc, err);
	TEST_ASSERT(strstr(err, "vmrun: ") &&
			    !strchr(strchr(err, '\n') + 1, '\n'),
		    "%s: want one line of error, got: %s", what, err);
}

static void test_run_bad_kernels_refused(void)
{
	static uint8_t junk[4096];
	uint8_t elf[4096];
	unsigned int i;
	int fd;
	ssize_t n;

	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131 + 7);
	expect_bad_kernel(junk, sizeof(junk), "garbage");
	expect_bad_kernel("", 0, "empty file");

	/* A real ELF, truncated and corrupted. */
	fd = open(GUEST_DIR "/hello_pvh.elf", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open hello_pvh.elf");
	n = read(fd, elf, sizeof(elf));
	close(fd);
	TEST_ASSERT(n > 200, "short ELF");
	expect_bad_kernel(elf, 100, "truncated ELF");
	elf[0x1c] = 0xff; /* e_phoff far outside the file */
	elf[0x1d] = 0xff;
	expect_bad_kernel(elf, (size_t)n, "ELF with bad e_phoff");

	{
		const char *const a[] = { "run", "--kernel", "/nonexistent/k",
					  NULL };
		int rc = run_vmrun(a, out, err, CAP, 60000);

		TEST_ASSERT(rc == 2 && strstr(err, "No such file"),
			    "missing kernel: exit %d, %s", rc, err);
	}
}

static void test_run_bad_arguments_refused(void)
{
	static const char *const cases[][6] = {
		{ "run", "--cpus", "0", NULL },
		{ "run", "--cpus", "99", NULL },
		{ "run", "--cpus", "two", NULL },
		{ "run", "--mem", "12X", NULL },
		{ "run", "--mem", "1", NULL },
		{ "run", "--bogus", NULL },
		{ "run", "extra-arg", NULL },
		{ "run", "--console", "tty:/dev/x", "--kernel",
		  GUEST_DIR "/hello_mb.bin", NULL },
		{ "frobnicate", NULL },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int rc = run_vmrun(cases[i], out, err, CAP, 60000);

		TEST_ASSERT(rc == 2 || (i == 7 && rc == 1),
			    "case %u (%s %s): exit %d, stderr: %s", i,
			    cases[i][1] ? cases[i][1] : "",
			    cases[i][2] ? cases[i][2] : "", rc, err);
		TEST_ASSERT(strstr(err, "vmrun"), "case %u: no message", i);
	}
	{
		const char *const a[] = { "run", "--help", NULL };
		int rc = run_vmrun(a, out, err, CAP, 60000);

		TEST_ASSERT(rc == 0 && strstr(out, "--kernel") &&
				    strstr(out, "exit status"),
			    "--help: exit %d, %s", rc, out);
	}
}

static void test_run_info(void)
{
	int rc = RUN(60000, "info");

	TEST_ASSERT(rc == 0, "exit %d: %s", rc, err);
	TEST_ASSERT(strstr(out, "KVM API version: 12") &&
			    strstr(out, "dirty tracking") &&
			    strstr(out, "KVM_GET_SUPPORTED_CPUID"),
		    "info output: %s", out);
	TEST_ASSERT(!strncmp(out, "KVM: kvm", 8) && strstr(out, "  paging "),
		    "info does not name the KVM: %s", out);
	{
		char label[64];

		rc = RUN(60000, "info", "--kvm");
		TEST_ASSERT(rc == 0 && strchr(out, '\n'), "info --kvm: exit %d",
			    rc);
		snprintf(label, sizeof(label), "KVM: %.40s", out);
		rc = RUN(60000, "info");
		TEST_ASSERT(!strncmp(out, label, strlen(label)),
			    "info --kvm said '%s', info says: %s", label, out);
	}
	rc = RUN(60000, "info", "--bogus");
	TEST_ASSERT(rc == 2 && strstr(err, "--bogus"), "info --bogus: exit %d",
		    rc);
}

const struct test_case run_tests[] = {
	{ "multiboot_poweroff", test_run_multiboot_poweroff },
	{ "pvh_poweroff", test_run_pvh_poweroff },
	{ "console_file", test_run_console_file },
	{ "triple_fault_exit_code", test_run_triple_fault_exit_code },
	{ "guest_reset_exit_code", test_run_guest_reset_exit_code },
	{ "bad_kernels_refused", test_run_bad_kernels_refused },
	{ "bad_arguments_refused", test_run_bad_arguments_refused },
	{ "info", test_run_info },
	{ NULL, NULL },
};
