/* SPDX-License-Identifier: MIT */
/*
 * The linux suite's refusals: corrupt kernels and initramfs images,
 * through the bzImage's own entry and unpacked on the host. They need no
 * guest and run on every KVM (test_linux.c has the boots).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/kvm/kvm_tests.h"
#include "tests/kvm/run_util.h"

#define CAP (1 << 20)

static char out[CAP], err[CAP];
static char kernel[4096], initrd[4096];

static int write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	bool ok = fd >= 0 && write(fd, p, n) == (ssize_t)n;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* A cpio "newc" header and name for @name, padded; returns its length. */
static size_t cpio_entry(char *buf, const char *name, unsigned int filesize)
{
	size_t n = (size_t)sprintf(
		buf,
		"070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		1u, 0100644u, 0u, 0u, 1u, 0u, filesize, 0u, 0u, 0u, 0u,
		(unsigned int)strlen(name) + 1, 0u);

	memcpy(buf + n, name, strlen(name) + 1);
	n += strlen(name) + 1;
	while (n % 4)
		buf[n++] = 0;
	return n;
}

/* bad_images works on a copy of the prepared kernel (not a synthetic one). */
static bool real_kernel;

/* vmrun run with @k and @i (--kernel-entry @entry) must exit 2 naming @why. */
static void refused_as(const char *k, const char *i, const char *entry,
		       const char *why)
{
	const char *const a[] = { "run",
				  "--kernel",
				  k,
				  "--initrd",
				  i,
				  "--mem",
				  "512M",
				  "--cmdline",
				  "console=ttyS0",
				  "--kernel-entry",
				  entry,
				  NULL };
	int rc = run_vmrun(a, out, err, CAP, 60000);

	TEST_ASSERT(
		rc == 2 && strstr(err, why),
		"--kernel-entry %s: exit %d (want 2), stderr lacks '%s': %s",
		entry, rc, why, err);
}

/* Refused by the parser's checks, through the bzImage's own entry and
 * unpacked on the host alike (the synthetic image's payload is only a
 * magic and a footer: it has nothing to unpack). */
static void refused(const char *k, const char *i, const char *why)
{
	refused_as(k, i, "bzimage", why);
	if (real_kernel)
		refused_as(k, i, "auto", why);
}

/*
 * Corrupt kernels and initramfs images are refused before anything runs,
 * each with its reason. Built from the prepared files when they exist,
 * else from a synthetic header (the parser's checks need no real kernel).
 */
void test_linux_bad_images(void)
{
	char dir[] = "/tmp/vmrun-lbad-XXXXXX", k[128], i[128], good_i[128];
	size_t kn = 0, in = 0;
	uint8_t *kd, *id;
	const char *vdir = getenv("VMRUN_LINUX_DIR");
	bool real;

	TEST_ASSERT(mkdtemp(dir), "mkdtemp");
	snprintf(k, sizeof(k), "%s/vmlinuz", dir);
	snprintf(i, sizeof(i), "%s/initrd", dir);
	snprintf(good_i, sizeof(good_i), "%s/good-initrd", dir);
	if (vdir) {
		snprintf(kernel, sizeof(kernel), "%s/vmlinuz", vdir);
		snprintf(initrd, sizeof(initrd), "%s/initrd.img", vdir);
	}
	kd = vdir ? slurp_file(kernel, &kn) : NULL;
	id = vdir ? slurp_file(initrd, &in) : NULL;
	real = kd && id;
	real_kernel = real;
	if (!kd || !id) {
		/* No prepared guest: a minimal well-formed bzImage header
		 * (boot protocol 2.15, 64-bit, 1 setup sector, xz payload)
		 * and a one-entry cpio. */
		free(kd);
		free(id);
		kn = 0x400 + 0x1000;
		kd = calloc(1, kn);
		TEST_ASSERT(kd, "calloc");
		kd[0x1f1] = 1;
		kd[0x1f4] = 0x1000 / 16 & 0xff;
		kd[0x1f5] = (0x1000 / 16) >> 8;
		kd[0x1fe] = 0x55;
		kd[0x1ff] = 0xaa;
		kd[0x201] = 0x6a;
		memcpy(kd + 0x202, "HdrS", 4);
		kd[0x206] = 0x0f;
		kd[0x207] = 0x02;
		kd[0x211] = 1;
		kd[0x22c] = 0xff;
		kd[0x22d] = 0xff;
		kd[0x22e] = 0xff;
		kd[0x22f] = 0x7f;
		kd[0x232] = 0x20; /* alignment 2 MiB */
		kd[0x236] = 3;
		kd[0x238] = 0xff;
		kd[0x239] = 0x07;
		kd[0x248] = 0x10; /* payload at +0x10, 0x100 bytes */
		kd[0x24d] = 0x01;
		kd[0x25b] = 0x01; /* pref_address 16 MiB */
		kd[0x262] = 0x10; /* init_size 1 MiB */
		memcpy(kd + 0x400 + 0x10,
		       "\xfd"
		       "7zXZ\0",
		       6);
		memcpy(kd + 0x400 + 0x10 + 0x100 - 6, "YZ\0\0\x01\0", 6);
		id = malloc(512);
		TEST_ASSERT(id, "malloc");
		in = cpio_entry((char *)id, "TRAILER!!!", 0);
	}
	TEST_ASSERT(write_file(good_i, id, in) == 0, "writing %s", good_i);

	/* The kernel cut short. */
	TEST_ASSERT(write_file(k, kd, kn / 2) == 0, "writing %s", k);
	refused(k, good_i, "truncated");
	/* A garbled header: boot protocol 1.00. */
	kd[0x206] ^= 0xff;
	kd[0x207] = 0x01;
	TEST_ASSERT(write_file(k, kd, kn) == 0, "writing %s", k);
	refused(k, good_i, "boot protocol");
	kd[0x207] = 0x02;
	kd[0x206] ^= 0xff;
	/* A garbled payload start. */
	{
		uint32_t setup = ((kd[0x1f1] ? kd[0x1f1] : 4) + 1) * 512u, po;

		memcpy(&po, kd + 0x248, 4);
		kd[setup + po] ^= 0x55;
		TEST_ASSERT(write_file(k, kd, kn) == 0, "writing %s", k);
		refused(k, good_i, "corrupt");
		kd[setup + po] ^= 0x55;
		/* Damage in the middle of a real kernel's payload: unpacking
		 * it on the host finds it (through the bzImage's own entry
		 * only the guest's decompressor would, halting the guest). */
		if (real) {
			uint32_t pl;

			memcpy(&pl, kd + 0x24c, 4);
			kd[setup + po + pl / 2] ^= 0x55;
			TEST_ASSERT(write_file(k, kd, kn) == 0, "writing %s",
				    k);
			refused_as(k, good_i, "auto", "payload (xz)");
			kd[setup + po + pl / 2] ^= 0x55;
		}
	}
	TEST_ASSERT(write_file(k, kd, kn) == 0, "writing %s", k);

	/* The initramfs: not one at all, then a cpio cut short. */
	{
		static const char junk[] = "this is not an initramfs at all";
		char cut[512];
		size_t n = cpio_entry(cut, "init", 0x1000);

		TEST_ASSERT(write_file(i, junk, sizeof(junk)) == 0, "write");
		refused(k, i, "not an initramfs");
		/* The entry promises 4 KiB; 16 bytes follow. */
		memset(cut + n, 'x', 16);
		TEST_ASSERT(write_file(i, cut, n + 16) == 0, "write");
		refused(k, i, "initramfs is truncated");
	}
	/* A bzImage that is no kernel vmrun can boot: a 32-bit one. */
	kd[0x236] = 0;
	TEST_ASSERT(write_file(k, kd, kn) == 0, "writing %s", k);
	refused(k, good_i, "64-bit entry");
	free(kd);
	free(id);
	unlink(k);
	unlink(i);
	unlink(good_i);
	rmdir(dir);
}
