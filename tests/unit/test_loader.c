/* SPDX-License-Identifier: MIT */
/* The kernel-image parser against well-formed and hostile images. */
#include "kernel/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "tests/harness/bzimage.h"
#include "tests/unit/unit_tests.h"

/* Builds a minimal ELF64 with one PT_LOAD and one PT_NOTE. */
static size_t make_elf64(uint8_t *buf, size_t cap, const char *note_name,
			 uint32_t note_type, uint64_t entry)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));
	uint8_t *note = buf + 0x100;
	uint32_t namesz = (uint32_t)strlen(note_name) + 1;
	uint32_t hdr[3] = { namesz, 8, note_type };
	size_t nlen = 12 + ALIGN_UP(namesz, 4) + 8;

	memset(buf, 0, cap);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_phoff = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = 2;
	ph[0].p_type = PT_LOAD;
	ph[0].p_offset = 0x200;
	ph[0].p_paddr = 0x100000;
	ph[0].p_filesz = 0x100;
	ph[0].p_memsz = 0x1000;
	ph[1].p_type = PT_NOTE;
	ph[1].p_offset = 0x100;
	ph[1].p_filesz = nlen;
	memcpy(note, hdr, 12);
	memcpy(note + 12, note_name, namesz);
	memcpy(note + 12 + ALIGN_UP(namesz, 4), &entry, 8);
	return 0x300;
}

static void test_loader_vmrun_note(void)
{
	uint8_t buf[0x400];
	struct kernel_image img;
	char err[256];
	size_t n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	int ret = kernel_parse(buf, n, &img, err, sizeof(err));

	TEST_ASSERT(ret == 0, "parse: %d %s", ret, err);
	TEST_ASSERT(img.kind == KERNEL_ENTRY_VMRUN64 && img.entry == 0x100010,
		    "kind %d entry %#llx", img.kind,
		    (unsigned long long)img.entry);
	TEST_ASSERT(img.nr_segs == 1 && img.lo == 0x100000 &&
			    img.hi == 0x101000,
		    "segs %u [%#llx, %#llx)", img.nr_segs,
		    (unsigned long long)img.lo, (unsigned long long)img.hi);
}

static void test_loader_pvh_note(void)
{
	uint8_t buf[0x400];
	struct kernel_image img;
	char err[256];
	size_t n = make_elf64(buf, sizeof(buf), "Xen", 18, 0x100020);
	int ret = kernel_parse(buf, n, &img, err, sizeof(err));

	TEST_ASSERT(ret == 0 && img.kind == KERNEL_ENTRY_PVH &&
			    img.entry == 0x100020,
		    "ret %d kind %d: %s", ret, img.kind, err);
}

static void expect_refused(const uint8_t *buf, size_t n, const char *what)
{
	struct kernel_image img;
	char err[256];
	int ret = kernel_parse(buf, n, &img, err, sizeof(err));

	TEST_ASSERT(ret == -EINVAL || ret == -ENOTSUP, "%s: accepted (%d)",
		    what, ret);
	TEST_ASSERT(err[0], "%s: no reason given", what);
}

static void test_loader_hostile_headers(void)
{
	uint8_t buf[0x400];
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof(*eh));
	size_t n;

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	eh->e_phnum = 0xffff;
	expect_refused(buf, n, "phnum past the file");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	ph[0].p_offset = ~0ULL - 8;
	expect_refused(buf, n, "segment offset wrapping");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	ph[0].p_filesz = 0x2000;
	expect_refused(buf, n, "filesz > memsz");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	ph[0].p_paddr = ~0ULL - 0x10;
	expect_refused(buf, n, "segment wrapping the address space");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	ph[1].p_filesz = 0x1000;
	expect_refused(buf, n, "note segment past the file");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	memcpy(buf + 0x100, "\xff\xff\xff\x7f", 4); /* huge namesz */
	expect_refused(buf, n, "note with a huge name size");

	n = make_elf64(buf, sizeof(buf), "other", 1, 0x100010);
	expect_refused(buf, n, "no entry note");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	eh->e_machine = EM_AARCH64;
	expect_refused(buf, n, "wrong machine");

	n = make_elf64(buf, sizeof(buf), "vmrun", 1, 0x100010);
	expect_refused(buf, 40, "truncated header");
	eh->e_phentsize = 12;
	expect_refused(buf, n, "wrong phentsize");
}

static void test_loader_multiboot_kludge(void)
{
	uint8_t buf[0x400];
	uint32_t h[8] = { 0x1badb002, 0x00010000, 0,	    0x200010,
			  0x200000,   0x200400,	  0x201000, 0x200020 };
	struct kernel_image img;
	char err[256];
	int ret;

	h[2] = -(h[0] + h[1]);
	memset(buf, 0, sizeof(buf));
	memcpy(buf + 0x10, h, sizeof(h));
	ret = kernel_parse(buf, sizeof(buf), &img, err, sizeof(err));
	TEST_ASSERT(ret == 0 && img.kind == KERNEL_ENTRY_MULTIBOOT &&
			    img.entry == 0x200020 && img.hi == 0x201000,
		    "ret %d kind %d entry %#llx: %s", ret, img.kind,
		    (unsigned long long)img.entry, err);

	/* header_addr below load_addr */
	h[3] = 0x100000;
	memcpy(buf + 0x10, h, sizeof(h));
	expect_refused(buf, sizeof(buf), "multiboot header_addr < load_addr");
	/* bss end below the loaded part */
	h[3] = 0x200010;
	h[6] = 0x200100;
	memcpy(buf + 0x10, h, sizeof(h));
	expect_refused(buf, sizeof(buf), "multiboot bss_end inside the image");
	/* bad checksum: not a header at all */
	h[2] = 0;
	memcpy(buf + 0x10, h, sizeof(h));
	expect_refused(buf, sizeof(buf), "multiboot bad checksum");
}

/*
 * A minimal well-formed bzImage: boot protocol 2.15, 64-bit entry, one
 * setup sector, 0x1000 bytes of kernel holding a 0x100-byte xz payload
 * (magic, footer and the appended size), at 16 MiB, init_size 1 MiB.
 */
#define BZ_LEN (0x400 + 0x1000)
static void make_bzimage(uint8_t *d)
{
	uint32_t v;

	memset(d, 0, BZ_LEN);
	d[0x1f1] = 1;
	v = 0x1000 / 16;
	memcpy(d + 0x1f4, &v, 4);
	d[0x1fe] = 0x55;
	d[0x1ff] = 0xaa;
	d[0x201] = 0x6a;
	memcpy(d + 0x202, "HdrS", 4);
	d[0x206] = 0x0f;
	d[0x207] = 0x02;
	d[0x211] = 1;
	v = 0x7fffffff;
	memcpy(d + 0x22c, &v, 4);
	v = 0x200000;
	memcpy(d + 0x230, &v, 4);
	d[0x236] = 3;
	v = 2047;
	memcpy(d + 0x238, &v, 4);
	v = 0x10;
	memcpy(d + 0x248, &v, 4);
	v = 0x100;
	memcpy(d + 0x24c, &v, 4);
	v = 0x1000000;
	memcpy(d + 0x258, &v, 4);
	v = 0x100000;
	memcpy(d + 0x260, &v, 4);
	memcpy(d + 0x410,
	       "\xfd"
	       "7zXZ",
	       6);
	memcpy(d + 0x410 + 0x100 - 6, "YZ", 2);
	v = 0x80000; /* decompressed size */
	memcpy(d + 0x410 + 0x100 - 4, &v, 4);
}

static void bz_refused(uint8_t *d, size_t len, const char *why)
{
	struct kernel_image img;
	char err[256];
	int ret = kernel_parse(d, len, &img, err, sizeof(err));

	TEST_ASSERT(ret < 0 && strstr(err, why),
		    "accepted or wrong reason (want '%s'): %d %s", why, ret,
		    err);
	make_bzimage(d);
}

static void test_loader_bzimage(void)
{
	static uint8_t d[BZ_LEN];
	struct kernel_image img;
	char err[256];
	int ret;

	make_bzimage(d);
	ret = kernel_parse(d, BZ_LEN, &img, err, sizeof(err));
	TEST_ASSERT(ret == 0, "refused: %s", err);
	TEST_ASSERT(img.kind == KERNEL_ENTRY_LINUX64, "kind %d", img.kind);
	TEST_ASSERT(img.entry == 0x1000200 && img.nr_segs == 1 &&
			    img.segs[0].paddr == 0x1000000 &&
			    img.segs[0].offset == 0x400 &&
			    img.segs[0].filesz == 0x1000 && img.hi == 0x1100000,
		    "entry %#llx seg %#llx+%#llx hi %#llx",
		    (unsigned long long)img.entry,
		    (unsigned long long)img.segs[0].paddr,
		    (unsigned long long)img.segs[0].filesz,
		    (unsigned long long)img.hi);
	TEST_ASSERT(img.bz.cmdline_max == 2047 &&
			    img.bz.initrd_max == 0x7fffffff &&
			    img.bz.hdr_off == 0x1f1 &&
			    img.bz.hdr_len == 0x26c - 0x1f1,
		    "setup header fields");
	/* A signed image has its signature appended after the kernel the
	 * header counts: still fine, and not loaded. */
	d[0x1f4] = 0xf0;
	d[0x1f5] = 0;
	ret = kernel_parse(d, BZ_LEN, &img, err, sizeof(err));
	TEST_ASSERT(ret == 0 && img.segs[0].filesz == 0xf00, "refused: %s",
		    err);
	make_bzimage(d);

	bz_refused(d, BZ_LEN - 0x800, "truncated");
	d[0x206] = 0x0b;
	bz_refused(d, BZ_LEN, "boot protocol 2.11");
	d[0x236] = 0;
	bz_refused(d, BZ_LEN, "64-bit entry");
	d[0x211] = 0;
	bz_refused(d, BZ_LEN, "zImage");
	d[0x410] = 0;
	bz_refused(d, BZ_LEN, "compression format");
	d[0x410 + 0x100 - 6] = 0;
	bz_refused(d, BZ_LEN, "stream footer");
	memset(d + 0x410 + 0x100 - 4, 0xff, 4);
	bz_refused(d, BZ_LEN, "decompressed");
	d[0x24d] = 0x20; /* payload length 0x2000 > the kernel */
	bz_refused(d, BZ_LEN, "payload");
	d[0x201] = 0xff; /* header runs into the rest of boot_params */
	bz_refused(d, BZ_LEN, "setup header");
	d[0x25a] = 0x10; /* pref_address 0x1010000: not 2 MiB aligned */
	bz_refused(d, BZ_LEN, "alignment");
	d[0x263] = 0xff; /* init_size beyond 4 GiB */
	bz_refused(d, BZ_LEN, "not a layout");
}

static size_t cpio_put(uint8_t *b, const char *name, const void *data,
		       unsigned int size)
{
	size_t n = (size_t)sprintf(
		(char *)b,
		"070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		1u, 0100644u, 0u, 0u, 1u, 0u, size, 0u, 0u, 0u, 0u,
		(unsigned int)strlen(name) + 1, 0u);

	memcpy(b + n, name, strlen(name) + 1);
	n = ALIGN_UP(n + strlen(name) + 1, 4);
	memcpy(b + n, data, size);
	return ALIGN_UP(n + size, 4);
}

static void test_loader_initrd_check(void)
{
	static uint8_t b[4096];
	char err[256];
	size_t n;

	n = cpio_put(b, "init", "#!/bin/sh\n", 10);
	n += cpio_put(b + n, "TRAILER!!!", "", 0);
	TEST_ASSERT(initrd_check(b, n, err, sizeof(err)) == 0, "cpio: %s", err);
	/* Padding, then a compressed archive, as Debian's early cpio. */
	memset(b + n, 0, 512);
	memcpy(b + n + 512, "\x1f\x8b\x08", 3);
	TEST_ASSERT(initrd_check(b, n + 515, err, sizeof(err)) == 0,
		    "cpio + gzip: %s", err);
	TEST_ASSERT(initrd_check("\x28\xb5\x2f\xfd....", 8, err, sizeof(err)) ==
			    0,
		    "zstd: %s", err);
	TEST_ASSERT(initrd_check(b, n - 20, err, sizeof(err)) == -EINVAL &&
			    strstr(err, "truncated"),
		    "cut in the trailer: %s", err);
	TEST_ASSERT(initrd_check(b, 60, err, sizeof(err)) == -EINVAL &&
			    strstr(err, "truncated"),
		    "cut in the first entry: %s", err);
	TEST_ASSERT(initrd_check("hello world, not cpio", 21, err,
				 sizeof(err)) == -EINVAL &&
			    strstr(err, "not an initramfs"),
		    "junk: %s", err);
	memset(b, 0, 64);
	TEST_ASSERT(initrd_check(b, 64, err, sizeof(err)) == -EINVAL,
		    "zeroes accepted");
	n = cpio_put(b, "init", "x", 1);
	b[60] = 'z'; /* a filesize digit that is not hex */
	TEST_ASSERT(initrd_check(b, n, err, sizeof(err)) == -EINVAL &&
			    strstr(err, "corrupt"),
		    "bad header: %s", err);
}

/* Random mutations of a valid image never crash the parser. */
static void test_loader_mutations_never_crash(void)
{
	uint8_t good[0x400], buf[0x400];
	struct kernel_image img;
	char err[256];
	unsigned int i, j, accepted = 0;
	uint64_t x = 88172645463325252ULL;

	make_elf64(good, sizeof(good), "vmrun", 1, 0x100010);
	for (i = 0; i < 20000; i++) {
		size_t len = sizeof(buf);

		memcpy(buf, good, sizeof(buf));
		for (j = 0; j < 1 + i % 8; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[x % 0x300] = (uint8_t)(x >> 32);
		}
		if (i % 5 == 0)
			len = (size_t)(x >> 40) % sizeof(buf);
		if (kernel_parse(buf, len, &img, err, sizeof(err)) == 0) {
			accepted++;
			TEST_ASSERT(img.nr_segs <= KERNEL_MAX_SEGS, "segs");
			for (j = 0; j < img.nr_segs; j++)
				TEST_ASSERT(
					img.segs[j].offset +
							img.segs[j].filesz <=
						len,
					"accepted a segment outside the file");
		}
	}
	TEST_ASSERT(accepted > 0 && accepted < 20000, "accepted %u of 20000",
		    accepted);
}

/* Unpacks @d (@len bytes); the error (or "") into @err. */
static int unpack(const uint8_t *d, size_t len, uint8_t **out, size_t *n,
		  char *err, size_t errlen)
{
	struct kernel_image img;
	void *p = NULL;
	int ret = kernel_parse(d, len, &img, err, errlen);

	*out = NULL;
	if (ret < 0)
		return ret;
	ret = kernel_unpack(&img, &p, n, err, errlen);
	*out = p;
	return ret;
}

/*
 * The vmlinux inside a bzImage, unpacked on the host: xz, zstd and lz4
 * come out byte for byte; damage in the stream (where the format can see
 * it), or a trailer that lies about the size, is refused with a reason;
 * other formats are left to the kernel.
 */
static void test_loader_bzimage_unpack(void)
{
	static const char *const fmts[] = { "xz", "zstd", "lz4" };
	uint8_t elf[0x400], *bz, *out;
	struct kernel_image img;
	size_t len, off, plen, n, i;
	char err[256];
	uint32_t v;
	int ret;

	make_elf64(elf, sizeof(elf), "Xen", 18, 0x100020);
	for (i = 0; i < ARRAY_SIZE(fmts); i++) {
		bz = bzimage_wrap(elf, sizeof(elf), fmts[i], &len, &off, &plen);
		TEST_ASSERT(bz, "wrapping as %s", fmts[i]);
		ret = unpack(bz, len, &out, &n, err, sizeof(err));
		TEST_ASSERT(ret == 0, "%s: %d %s", fmts[i], ret, err);
		TEST_ASSERT(n == sizeof(elf) && !memcmp(out, elf, n),
			    "%s: %zu bytes, not the ELF", fmts[i], n);
		TEST_ASSERT(kernel_parse(out, n, &img, err, sizeof(err)) == 0 &&
				    img.kind == KERNEL_ENTRY_PVH,
			    "%s: the unpacked ELF: %s", fmts[i], err);
		munmap(out, n);

		/* A flipped byte in the middle of the stream. lz4's legacy
		 * frame has no checksum: a flipped literal comes out as it is
		 * (the kernel's own decompressor would not see it either). */
		bz[off + plen / 2] ^= 0x40;
		ret = unpack(bz, len, &out, &n, err, sizeof(err));
		if (!strcmp(fmts[i], "lz4") && !ret) {
			TEST_ASSERT(n == sizeof(elf) && memcmp(out, elf, n),
				    "lz4: damage vanished");
			munmap(out, n);
		} else {
			TEST_ASSERT(ret == -EINVAL && !out &&
					    strstr(err, fmts[i]),
				    "%s: damage accepted: %d %s", fmts[i], ret,
				    err);
		}
		bz[off + plen / 2] ^= 0x40;

		/* The trailer one byte short, then one byte long. */
		v = sizeof(elf) - 1;
		memcpy(bz + off + plen - 4, &v, 4);
		ret = unpack(bz, len, &out, &n, err, sizeof(err));
		TEST_ASSERT(ret == -EINVAL && strstr(err, "trailer"),
			    "%s: short trailer: %d %s", fmts[i], ret, err);
		v = sizeof(elf) + 1;
		memcpy(bz + off + plen - 4, &v, 4);
		ret = unpack(bz, len, &out, &n, err, sizeof(err));
		TEST_ASSERT(ret == -EINVAL && strstr(err, "trailer"),
			    "%s: long trailer: %d %s", fmts[i], ret, err);
		free(bz);
	}

	/* gzip: the kernel unpacks it itself. */
	bz = bzimage_wrap(elf, sizeof(elf), "xz", &len, &off, &plen);
	TEST_ASSERT(bz, "wrapping");
	bz[off] = 0x1f;
	bz[off + 1] = 0x8b;
	ret = unpack(bz, len, &out, &n, err, sizeof(err));
	TEST_ASSERT(ret == -ENOTSUP && strstr(err, "gzip"), "gzip: %d %s", ret,
		    err);
	free(bz);
}

/* Random damage to a compressed kernel never crashes the decoders. */
static void test_loader_unpack_mutations(void)
{
	static const char *const fmts[] = { "xz", "zstd", "lz4" };
	uint8_t elf[0x400], *good, *bz, *out;
	size_t len, off, plen, n, i, j, k;
	unsigned int unpacked = 0;
	char err[256];
	uint64_t x = 88172645463325252ULL;

	make_elf64(elf, sizeof(elf), "Xen", 18, 0x100020);
	for (i = 0; i < ARRAY_SIZE(fmts); i++) {
		good = bzimage_wrap(elf, sizeof(elf), fmts[i], &len, &off,
				    &plen);
		TEST_ASSERT(good, "wrapping");
		bz = malloc(len);
		TEST_ASSERT(bz, "malloc");
		for (j = 0; j < 2000; j++) {
			memcpy(bz, good, len);
			for (k = 0; k < 1 + j % 4; k++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				bz[off + x % plen] = (uint8_t)(x >> 32);
			}
			if (unpack(bz, len, &out, &n, err, sizeof(err)) == 0) {
				unpacked++;
				munmap(out, n);
			}
		}
		free(bz);
		free(good);
	}
	TEST_ASSERT(unpacked < 6000, "every damaged stream unpacked");
}

const struct test_case loader_tests[] = {
	{ "vmrun_note", test_loader_vmrun_note },
	{ "pvh_note", test_loader_pvh_note },
	{ "hostile_headers", test_loader_hostile_headers },
	{ "multiboot_kludge", test_loader_multiboot_kludge },
	{ "mutations_never_crash", test_loader_mutations_never_crash },
	{ "bzimage", test_loader_bzimage },
	{ "bzimage_unpack", test_loader_bzimage_unpack },
	{ "unpack_mutations", test_loader_unpack_mutations },
	{ "initrd_check", test_loader_initrd_check },
	{ NULL, NULL },
};
