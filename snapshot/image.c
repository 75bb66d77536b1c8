/* SPDX-License-Identifier: MIT */
#include "snapshot/image.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kernel/util/bitmap.h"
#include "snapshot/image_priv.h"
#include "snapshot/stream.h"

int image_fail(struct image *img, int ret, const char *fmt, ...)
{
	va_list ap;

	if (img->ret)
		return img->ret;
	img->ret = ret;
	va_start(ap, fmt);
	vsnprintf(img->err, sizeof(img->err), fmt, ap);
	va_end(ap);
	stream_set_error(img->s, ret);
	return ret;
}

struct image *image_alloc(struct stream *s, bool writing)
{
	struct image *img = calloc(1, sizeof(*img));

	if (!img)
		return NULL;
	img->s = s;
	img->writing = writing;
	img->batch_pages = IMAGE_BATCH_PAGES;
	return img;
}

uint32_t image_frame_check(const uint8_t *frame)
{
	return (uint32_t)XXH3_64bits(frame, 28);
}

void image_destroy(struct image *img)
{
	size_t i;

	if (!img)
		return;
	free(img->raw);
	free(img->comp);
	free(img->runs);
	free(img->zruns);
	ZSTD_freeCCtx(img->zc);
	if (img->hdr_msg)
		vmrun__image_header__free_unpacked(img->hdr_msg, NULL);
	free(img->payload);
	for (i = 0; i < img->nr_segs; i++) {
		free(img->segs[i].seen);
		bitmap_free(img->segs[i].mine);
	}
	free(img->segs);
	ZSTD_freeDCtx(img->zd);
	LZ4F_freeDecompressionContext(img->lz4d);
	free(img);
}

uint64_t image_content_hash(const struct image *img)
{
	return img->content_hash;
}

const char *image_error(const struct image *img)
{
	return img->err;
}

int image_codec_parse(const char *name, enum image_codec *out)
{
	static const enum image_codec all[] = { IMAGE_CODEC_LZ4,
						IMAGE_CODEC_ZSTD,
						IMAGE_CODEC_NONE };
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(all); i++)
		if (!strcmp(name, image_codec_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	return -EINVAL;
}

const char *image_codec_name(enum image_codec codec)
{
	switch (codec) {
	case IMAGE_CODEC_NONE:
		return "none";
	case IMAGE_CODEC_LZ4:
		return "lz4";
	case IMAGE_CODEC_ZSTD:
		return "zstd";
	}
	return "unknown";
}

bool image_page_is_zero(const void *page)
{
	const uint64_t *w = page;
	const unsigned char *b = page;

	/*
	 * Most non-zero pages differ in their first line, so that check comes
	 * first. Past it, a page whose first 64 bytes are zero is zero exactly
	 * when every byte equals the one 64 bytes before it; memcmp() compares
	 * with the widest vectors the CPU has and stops at the first
	 * difference, so the scan runs at memory bandwidth.
	 */
	if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
		return false;
	return memcmp(b, b + 64, IMAGE_PAGE_SIZE - 64) == 0;
}

void image_counts(const struct image *img, uint64_t *pages,
		  uint64_t *zero_pages)
{
	*pages = img->nr_pages;
	*zero_pages = img->nr_zero_pages;
}
