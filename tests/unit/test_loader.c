/* SPDX-License-Identifier: MIT */
/* The kernel-image parser against well-formed and hostile images. */
#include "kernel/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>

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

const struct test_case loader_tests[] = {
	{ "vmrun_note", test_loader_vmrun_note },
	{ "pvh_note", test_loader_pvh_note },
	{ "hostile_headers", test_loader_hostile_headers },
	{ "multiboot_kludge", test_loader_multiboot_kludge },
	{ "mutations_never_crash", test_loader_mutations_never_crash },
	{ NULL, NULL },
};
