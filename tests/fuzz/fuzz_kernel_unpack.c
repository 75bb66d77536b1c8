/* SPDX-License-Identifier: MIT */
/*
 * The kernel-image parser and a bzImage's unpacking on the host
 * (kernel_parse(), kernel_unpack(): what vmrun run does with --kernel
 * before anything runs) against arbitrary files. The first byte picks a
 * mode: even, the rest is the file as it is; odd, the rest is wrapped
 * as the compressed payload of a well-formed bzImage (xz, zstd or lz4,
 * by the next byte) and then mutated (offset, xor pairs). Each must be refused
 * with a reason or accepted; an unpacked kernel is as long as the
 * payload's trailer says, and an unchanged wrapped one unpacks to
 * exactly what was wrapped.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernel/x86/loader.h"
#include "tests/fuzz/fuzz.h"
#include "tests/harness/bzimage.h"

/*
 * Parses @data and unpacks it if it is a bzImage: 0 if it unpacked, 1 if
 * the parser refused it or it is no bzImage, < 0 if unpacking failed.
 */
static int load(const uint8_t *data, size_t size, const uint8_t *want,
		size_t want_len)
{
	struct kernel_image img;
	char err[512];
	void *out;
	size_t n;
	int ret;

	err[0] = 0;
	ret = kernel_parse(data, size, &img, err, sizeof(err));
	if (ret < 0 && !err[0])
		abort(); /* refused without a reason */
	if (ret < 0 || img.kind != KERNEL_ENTRY_LINUX64)
		return 1;
	err[0] = 0;
	ret = kernel_unpack(&img, &out, &n, err, sizeof(err));
	if (ret < 0) {
		if (!err[0])
			abort();
		return ret;
	}
	if (n != img.bz.payload_size)
		abort(); /* unpacked to another size than the trailer says */
	if (want && (n != want_len || memcmp(out, want, n)))
		abort(); /* an intact payload unpacked to something else */
	munmap(out, n);
	return 0;
}

static void fuzz_wrapped(const uint8_t *data, size_t size)
{
	static const char *const fmts[] = { "xz", "zstd", "lz4" };
	size_t elf_len, len, off, plen, i;
	bool changed = false;
	uint8_t *bz;

	if (size < 2)
		return;
	/* The first half (at least a byte) is what gets compressed. */
	elf_len = size / 2 ? size / 2 : 1;
	bz = bzimage_wrap(data + 1, elf_len, fmts[data[0] % 3], &len, &off,
			  &plen);
	if (!bz)
		abort();
	for (i = 1 + elf_len; i + 3 <= size; i += 3) {
		size_t at = off + (data[i] | (size_t)data[i + 1] << 8) % plen;

		if (data[i + 2]) {
			bz[at] ^= data[i + 2];
			changed = true;
		}
	}
	/* (The parser may refuse a payload too small to be a kernel's.) */
	if (load(bz, len, changed ? NULL : data + 1, elf_len) < 0 && !changed)
		abort(); /* an intact payload failed to unpack */
	free(bz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1)
		fuzz_wrapped(data + 1, size - 1);
	else
		load(data + 1, size - 1, NULL, 0);
	return 0;
}
