/* SPDX-License-Identifier: MIT */
/*
 * A bzImage's compressed vmlinux, decompressed on the host (see
 * kernel_unpack() in loader.h). The parser has already found the payload
 * and checked its magic and trailer; here the decoder checks the rest
 * (xz carries a CRC of what it decompresses, zstd a frame structure), so
 * damage in the middle of the stream is refused with a message instead
 * of halting the guest's decompressor with interrupts off.
 */
#include <errno.h>
#include <lz4.h>
#include <lzma.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "kernel/util/compiler.h"
#include "kernel/util/log.h"
#include "kernel/x86/loader.h"

/* liblzma's decoder for one xz stream; a kernel's uses a 32 MiB window. */
#define XZ_MEMLIMIT (256ULL << 20)

/* The payload holds more than its trailer says. */
static int too_long(char *err, size_t errlen, const char *fmt, size_t outlen)
{
	return err_printf(
		err, errlen, -EINVAL,
		"bzImage payload (%s) decompresses to more than the %zu bytes its trailer says: the file is corrupt",
		fmt, outlen);
}

/* The payload ended short of what its trailer says. */
static int too_short(char *err, size_t errlen, const char *fmt, size_t got,
		     size_t outlen)
{
	return err_printf(
		err, errlen, -EINVAL,
		"bzImage payload (%s) decompresses to %zu bytes, its trailer says %zu: the file is corrupt",
		fmt, got, outlen);
}

static const char *lzma_why(lzma_ret r)
{
	switch (r) {
	case LZMA_MEM_ERROR:
		return "out of memory";
	case LZMA_MEMLIMIT_ERROR:
		return "it needs more than 256 MiB to decompress";
	case LZMA_FORMAT_ERROR:
		return "not an xz stream";
	case LZMA_OPTIONS_ERROR:
		return "it uses options this liblzma does not support";
	case LZMA_DATA_ERROR:
		return "the data is corrupt";
	case LZMA_BUF_ERROR:
		return "it is truncated";
	default:
		return "the decoder failed";
	}
}

static int unpack_xz(const uint8_t *in, size_t len, uint8_t *out, size_t outlen,
		     char *err, size_t errlen)
{
	lzma_stream s = LZMA_STREAM_INIT;
	lzma_ret r;

	r = lzma_stream_decoder(&s, XZ_MEMLIMIT, 0);
	if (r != LZMA_OK)
		return err_printf(err, errlen,
				  r == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL,
				  "bzImage payload (xz): %s", lzma_why(r));
	s.next_in = in;
	s.avail_in = len;
	s.next_out = out;
	s.avail_out = outlen;
	/* One stream, then the 4-byte size the build appends: the decoder
	 * (not LZMA_CONCATENATED) stops at the stream's end. */
	r = lzma_code(&s, LZMA_FINISH);
	lzma_end(&s);
	if (r == LZMA_OK || (r == LZMA_BUF_ERROR && !s.avail_out))
		return too_long(err, errlen, "xz", outlen);
	if (r != LZMA_STREAM_END)
		return err_printf(err, errlen,
				  r == LZMA_MEM_ERROR ? -ENOMEM : -EINVAL,
				  "bzImage payload (xz) at byte %zu of %zu: %s",
				  len - s.avail_in, len, lzma_why(r));
	if (s.avail_out)
		return too_short(err, errlen, "xz", outlen - s.avail_out,
				 outlen);
	return 0;
}

static int unpack_zstd(const uint8_t *in, size_t len, uint8_t *out,
		       size_t outlen, char *err, size_t errlen)
{
	size_t clen = ZSTD_findFrameCompressedSize(in, len), n;
	ZSTD_DCtx *dc;

	if (ZSTD_isError(clen))
		return err_printf(err, errlen, -EINVAL,
				  "bzImage payload (zstd): %s",
				  ZSTD_getErrorName(clen));
	dc = ZSTD_createDCtx();
	if (!dc)
		return err_printf(err, errlen, -ENOMEM,
				  "bzImage payload (zstd): out of memory");
	/* The kernel's build compresses with --ultra -22: a 128 MiB window. */
	ZSTD_DCtx_setParameter(dc, ZSTD_d_windowLogMax, 27);
	n = ZSTD_decompressDCtx(dc, out, outlen, in, clen);
	ZSTD_freeDCtx(dc);
	if (ZSTD_isError(n) &&
	    ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
		return too_long(err, errlen, "zstd", outlen);
	if (ZSTD_isError(n))
		return err_printf(err, errlen, -EINVAL,
				  "bzImage payload (zstd): %s",
				  ZSTD_getErrorName(n));
	if (n != outlen)
		return too_short(err, errlen, "zstd", n, outlen);
	return 0;
}

/*
 * lz4 as the kernel's build writes it: the legacy frame ("lz4 -l"), a
 * magic, then blocks of at most 8 MiB decompressed, each after its
 * compressed size; another magic may start a concatenated archive.
 */
#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20)

static int unpack_lz4(const uint8_t *in, size_t len, uint8_t *out,
		      size_t outlen, char *err, size_t errlen)
{
	size_t at = 4, pos = 0;
	uint32_t c;

	/* The input ends with the 4-byte size the build appends. */
	len -= 4;
	while (at < len) {
		int n;

		if (len - at < 4)
			return err_printf(
				err, errlen, -EINVAL,
				"bzImage payload (lz4) is truncated in a block header at byte %zu",
				at);
		memcpy(&c, in + at, 4);
		at += 4;
		if (c == LZ4_LEGACY_MAGIC)
			continue;
		if (!c || c > len - at ||
		    c > (uint32_t)LZ4_compressBound(LZ4_LEGACY_BLOCK))
			return err_printf(
				err, errlen, -EINVAL,
				"bzImage payload (lz4) has a %u-byte block at byte %zu of %zu: the file is corrupt",
				c, at - 4, len);
		if (pos == outlen)
			return too_long(err, errlen, "lz4", outlen);
		n = LZ4_decompress_safe((const char *)in + at,
					(char *)out + pos, (int)c,
					(int)(outlen - pos < LZ4_LEGACY_BLOCK ?
						      outlen - pos :
						      LZ4_LEGACY_BLOCK));
		if (n <= 0)
			return err_printf(
				err, errlen, -EINVAL,
				"bzImage payload (lz4): the block at byte %zu is corrupt (or decompresses to more than its trailer says)",
				at - 4);
		at += c;
		pos += (size_t)n;
	}
	if (pos != outlen)
		return too_short(err, errlen, "lz4", pos, outlen);
	return 0;
}

/* The formats unpacked here, by the name the parser gives them. */
static const struct {
	const char *fmt;
	int (*unpack)(const uint8_t *in, size_t len, uint8_t *out,
		      size_t outlen, char *err, size_t errlen);
} unpackers[] = {
	{ "xz", unpack_xz },
	{ "zstd", unpack_zstd },
	{ "lz4", unpack_lz4 },
};

int kernel_unpack(const struct kernel_image *img, void **out, size_t *outlen,
		  char *err, size_t errlen)
{
	const struct linux_setup *ls = &img->bz;
	const uint8_t *in = img->data + ls->payload_off;
	size_t n = ls->payload_size, i;
	uint8_t *buf;
	int ret;

	if (img->kind != KERNEL_ENTRY_LINUX64 || !ls->payload_fmt)
		return err_printf(err, errlen, -EINVAL,
				  "not a bzImage: nothing to unpack");
	for (i = 0; i < ARRAY_SIZE(unpackers); i++)
		if (!strcmp(ls->payload_fmt, unpackers[i].fmt))
			break;
	if (i == ARRAY_SIZE(unpackers))
		return err_printf(
			err, errlen, -ENOTSUP,
			"bzImage payload is %s: vmrun unpacks xz, zstd and lz4 (the kernel unpacks the others itself)",
			ls->payload_fmt);
	buf = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (buf == MAP_FAILED)
		return err_printf(err, errlen, -ENOMEM,
				  "%zu bytes for the unpacked kernel: %s", n,
				  strerror(errno));
	ret = unpackers[i].unpack(in, ls->payload_len, buf, n, err, errlen);
	if (ret < 0) {
		munmap(buf, n);
		return ret;
	}
	*out = buf;
	*outlen = n;
	return 0;
}
