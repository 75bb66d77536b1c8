/* SPDX-License-Identifier: MIT */
/* vmrun run end to end: kernels of each boot protocol, exit codes, bad input. */
#include <fcntl.h>
#include <glob.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/harness/bzimage.h"
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

/* Writes @len bytes of @data to @path. */
static void put_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	TEST_ASSERT(fd >= 0, "create %s", path);
	TEST_ASSERT(write(fd, data, len) == (ssize_t)len, "write %s", path);
	close(fd);
}

/* @elf (@n bytes) wrapped as a bzImage (@fmt) into file @k; the image
 * (malloc()ed) and where its payload lies. */
static uint8_t *put_wrapped(const char *k, const uint8_t *elf, size_t n,
			    const char *fmt, size_t *len, size_t *off,
			    size_t *plen)
{
	uint8_t *bz = bzimage_wrap(elf, n, fmt, len, off, plen);

	TEST_ASSERT(bz, "wrapping as %s", fmt);
	put_file(k, bz, *len);
	return bz;
}

/* hello_pvh.elf wrapped in @k boots with @word on its command line, and
 * vmrun -v says @says (how it got the vmlinux). */
static void boot_wrapped(const char *k, const char *word, const char *says)
{
	char hello[64];
	int rc = RUN(120000, "run", "-v", "--kernel", k, "--cmdline", word,
		     "--mem", "64M");

	snprintf(hello, sizeof(hello), "hello from pvh: %s\n", word);
	TEST_CHECK(rc == 0 && strstr(out, hello) && strstr(err, says),
		   "%s: exit %d, console '%s', stderr %s", word, rc, out, err);
}

/*
 * A bzImage boots through the PVH entry of the ELF inside, unpacked on
 * the host and then taken from the cache. The kernel here is
 * hello_pvh.elf wrapped (xz, zstd, lz4) as the kernel's build wraps a
 * vmlinux; it has no decompressor of its own, so only the unpacked way
 * can boot it. A damaged cache file is replaced, a damaged payload
 * refused, and --kernel-entry pvh refuses a format vmrun does not unpack.
 */
static void test_run_bzimage_unpacked(void)
{
	char dir[] = "/tmp/vmrun-bz-XXXXXX", k[64], cache[64], pat[96];
	static uint8_t elf[65536];
	uint8_t *bz;
	size_t len, off, plen;
	ssize_t n;
	glob_t g;
	int fd, rc;

	fd = open(GUEST_DIR "/hello_pvh.elf", O_RDONLY);
	TEST_ASSERT(fd >= 0, "open hello_pvh.elf");
	n = read(fd, elf, sizeof(elf));
	close(fd);
	TEST_ASSERT(n > 200 && n < (ssize_t)sizeof(elf), "read %zd", n);
	TEST_ASSERT(mkdtemp(dir), "mkdtemp");
	snprintf(k, sizeof(k), "%s/vmlinuz", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	snprintf(pat, sizeof(pat), "%s/kernels/vmlinux-*", cache);
	setenv("VMRUN_CACHE", cache, 1);

	bz = put_wrapped(k, elf, (size_t)n, "xz", &len, &off, &plen);
	boot_wrapped(k, "unpacked", "unpacked (xz");
	TEST_CHECK(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc == 1,
		   "no cached kernel %s", pat);
	boot_wrapped(k, "cached", "unpacked before");
	if (g.gl_pathc == 1) {
		TEST_CHECK(truncate(g.gl_pathv[0], 100) == 0, "truncate");
		boot_wrapped(k, "again", "damaged");
	}
	globfree(&g);

	/* A flipped byte in the middle of the stream: refused (not cached:
	 * the file's hash is new). */
	bz[off + plen / 2] ^= 0x40;
	put_file(k, bz, len);
	rc = RUN(120000, "run", "--kernel", k, "--mem", "64M");
	TEST_CHECK(rc == 2 && strstr(err, "payload (xz)"),
		   "damaged payload: exit %d, stderr %s", rc, err);
	/* gzip is the kernel's to unpack: --kernel-entry pvh refuses it. */
	bz[off] = 0x1f;
	bz[off + 1] = 0x8b;
	put_file(k, bz, len);
	rc = RUN(120000, "run", "--kernel-entry", "pvh", "--kernel", k);
	TEST_CHECK(rc == 2 && strstr(err, "gzip") &&
			   strstr(err, "--kernel-entry bzimage"),
		   "gzip with --kernel-entry pvh: exit %d, stderr %s", rc, err);
	free(bz);
	rc = RUN(120000, "run", "--kernel-entry", "elf", "--kernel", k);
	TEST_CHECK(rc == 2 && strstr(err, "auto, pvh or bzimage"),
		   "--kernel-entry elf: exit %d, stderr %s", rc, err);

	/* Three older kernels in the cache: storing the zstd one makes
	 * five, and the oldest goes. */
	for (fd = 0; fd < 3; fd++) {
		struct timeval tv[2] = { { 1000000000 + fd, 0 },
					 { 1000000000 + fd, 0 } };
		char junk[128];

		snprintf(junk, sizeof(junk), "%s/kernels/vmlinux-old%d", cache,
			 fd);
		put_file(junk, "old", 3);
		TEST_CHECK(utimes(junk, tv) == 0, "utimes %s", junk);
	}
	free(put_wrapped(k, elf, (size_t)n, "zstd", &len, NULL, NULL));
	boot_wrapped(k, "zstd", "unpacked (zstd");
	TEST_CHECK(glob(pat, 0, NULL, &g) == 0 && g.gl_pathc == 4,
		   "%zu kernels cached, want 4", g.gl_pathc);
	globfree(&g);
	snprintf(pat, sizeof(pat), "%s/kernels/vmlinux-old0", cache);
	TEST_CHECK(access(pat, F_OK) < 0, "the oldest kernel was kept");

	free(put_wrapped(k, elf, (size_t)n, "lz4", &len, NULL, NULL));
	boot_wrapped(k, "lz4", "unpacked (lz4");

	/* Without a PVH note (its type changed): --kernel-entry pvh refuses
	 * it, and the second time from the cache's note of that, without
	 * unpacking it again. */
	{
		uint8_t *x = memmem(elf, (size_t)n, "Xen", 4);
		uint32_t type = 17;

		TEST_ASSERT(x && x - elf >= 4, "no Xen note in hello_pvh.elf");
		memcpy(x - 4, &type, 4);
	}
	free(put_wrapped(k, elf, (size_t)n, "xz", &len, NULL, NULL));
	rc = RUN(120000, "run", "--kernel-entry", "pvh", "--kernel", k);
	TEST_CHECK(rc == 2 && strstr(err, "no PVH entry note") &&
			   !strstr(err, "nopvh-"),
		   "no PVH note: exit %d, stderr %s", rc, err);
	rc = RUN(120000, "run", "--kernel-entry", "pvh", "--kernel", k);
	TEST_CHECK(rc == 2 && strstr(err, "no PVH entry note") &&
			   strstr(err, "nopvh-"),
		   "no PVH note, again: exit %d, stderr %s", rc, err);

	unsetenv("VMRUN_CACHE");
	snprintf(pat, sizeof(pat), "rm -rf %s", dir);
	TEST_CHECK(system(pat) == 0, "%s", pat);
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
		/* Huge pages for guest RAM as this host's setting says. */
		FILE *f = fopen(
			"/sys/kernel/mm/transparent_hugepage/shmem_enabled",
			"r");
		char s[128] = "";
		bool on;

		if (f) {
			if (!fgets(s, sizeof(s), f))
				s[0] = 0;
			fclose(f);
		}
		on = strchr(s, '[') && !strstr(s, "[never]") &&
		     !strstr(s, "[deny]");
		TEST_CHECK(strstr(out, on ? "  huge pages    yes" :
					    "  huge pages    no"),
			   "shmem_enabled '%s', info says: %s", s, out);
	}
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
	{ "bzimage_unpacked", test_run_bzimage_unpacked },
	{ "console_file", test_run_console_file },
	{ "triple_fault_exit_code", test_run_triple_fault_exit_code },
	{ "guest_reset_exit_code", test_run_guest_reset_exit_code },
	{ "bad_kernels_refused", test_run_bad_kernels_refused },
	{ "bad_arguments_refused", test_run_bad_arguments_refused },
	{ "info", test_run_info },
	{ NULL, NULL },
};
