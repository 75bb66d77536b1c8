/* SPDX-License-Identifier: MIT */
#include "tests/harness/bzimage.h"

#include <lz4.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define SETUP 0x400  /* boot sector and one setup sector */
#define PAY_OFF 0x10 /* the payload, within the protected-mode part */

static void put32(uint8_t *d, size_t off, uint32_t v)
{
	memcpy(d + off, &v, 4);
}

uint8_t *bzimage_wrap(const void *elf, size_t n, const char *fmt, size_t *len,
		      size_t *payload_off, size_t *payload_len)
{
	size_t cap = n + n / 2 + 65536, clen = 0, pm, total;
	uint8_t *c = malloc(cap), *d;

	if (!c)
		return NULL;
	if (!strcmp(fmt, "xz")) {
		if (lzma_easy_buffer_encode(0, LZMA_CHECK_CRC32, NULL, elf, n,
					    c, &clen, cap) != LZMA_OK)
			goto fail;
	} else if (!strcmp(fmt, "zstd")) {
		clen = ZSTD_compress(c, cap, elf, n, 19);
		if (ZSTD_isError(clen))
			goto fail;
	} else if (!strcmp(fmt, "lz4")) {
		/* The legacy frame: magic, then sized blocks of <= 8 MiB. */
		const uint8_t *p = elf;
		size_t left = n;
		int b;

		put32(c, 0, 0x184c2102);
		clen = 4;
		while (left) {
			size_t chunk = left < (8u << 20) ? left : (8u << 20);

			b = LZ4_compress_default(
				(const char *)p, (char *)c + clen + 4,
				(int)chunk, (int)(cap - clen - 8));
			if (b <= 0)
				goto fail;
			put32(c, clen, (uint32_t)b);
			clen += 4 + (size_t)b;
			p += chunk;
			left -= chunk;
		}
	} else {
		goto fail;
	}
	/* The build appends the decompressed size, little-endian. */
	put32(c, clen, (uint32_t)n);
	clen += 4;
	pm = (PAY_OFF + clen + 15) & ~(size_t)15;
	total = SETUP + pm;
	d = calloc(1, total);
	if (!d)
		goto fail;
	d[0x1f1] = 1;			      /* setup_sects */
	put32(d, 0x1f4, (uint32_t)(pm / 16)); /* syssize */
	d[0x1fe] = 0x55;
	d[0x1ff] = 0xaa;
	d[0x201] = 0x6a; /* header ends at 0x26c */
	memcpy(d + 0x202, "HdrS", 4);
	d[0x206] = 0x0f; /* protocol 2.15 */
	d[0x207] = 0x02;
	d[0x211] = 1;		     /* LOADED_HIGH */
	put32(d, 0x22c, 0x7fffffff); /* initrd_addr_max */
	put32(d, 0x230, 0x200000);   /* kernel_alignment */
	d[0x236] = 3;		  /* XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G */
	put32(d, 0x238, 2047);	  /* cmdline_size */
	put32(d, 0x248, PAY_OFF); /* payload_offset */
	put32(d, 0x24c, (uint32_t)clen); /* payload_length */
	put32(d, 0x258, 0x1000000);	 /* pref_address */
	put32(d, 0x260, (uint32_t)(((n + pm) | 0xfffff) + 1)); /* init_size */
	memcpy(d + SETUP + PAY_OFF, c, clen);
	free(c);
	*len = total;
	if (payload_off)
		*payload_off = SETUP + PAY_OFF;
	if (payload_len)
		*payload_len = clen;
	return d;
fail:
	free(c);
	return NULL;
}
