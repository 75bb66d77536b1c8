/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_IMAGE_PRIV_H
#define VMM_SNAPSHOT_IMAGE_PRIV_H

/* Shared by image.c (common), image_write.c and image_read.c. */

#include <lz4frame.h>
#include <zstd.h>

#include "proto/snapshot.pb-c.h"
#include "snapshot/format.h"
#include "snapshot/image.h"

struct image_seg {
	uint32_t id;
	uint64_t nr_pages;
	uint8_t *mem;	/* NULL: pages go to the sink only */
	uint64_t *seen; /* pages given so far, unless rewrites are allowed */
	uint64_t *done; /* the caller's: pages not to write, and written */
	uint64_t *mine; /* pages this image wrote (images with rewrites) */
};

struct image {
	struct stream *s;
	bool writing;
	bool header_done, ended;
	bool verify;	    /* image_verify(): check, apply nothing */
	bool indexing;	    /* image_index(): descriptors only */
	bool fetching;	    /* image_fetch(): pages already counted */
	unsigned int flags; /* IMAGE_READ_* */
	int ret;	    /* the sticky error */
	char err[256];

	struct image_header hdr;
	uint32_t batch_pages;
	uint64_t content_hash;
	uint64_t nr_sections, nr_pages, nr_zero_pages;

	/* Writer: one data batch being gathered, and the zero runs. */
	uint8_t *raw;  /* batch_pages * 4096 */
	uint8_t *comp; /* the codec's bound for a full batch */
	size_t comp_cap;
	uint64_t *runs; /* (first, count) pairs of the batch */
	size_t nr_runs, batch_nr;
	uint64_t *zruns;
	size_t nr_zruns;
	ZSTD_CCtx *zc;

	/* Reader. */
	Vmrun__ImageHeader *hdr_msg;
	uint8_t *payload;
	size_t payload_cap;
	struct image_seg *segs;
	size_t nr_segs;
	ZSTD_DCtx *zd;
	LZ4F_dctx *lz4d;
};

/*
 * Records the first failure with its reason and returns the sticky error.
 * The stream gets the same error, so nothing reads past a bad record.
 */
int image_fail(struct image *img, int ret, const char *fmt, ...) __printf(3, 4);

struct image *image_alloc(struct stream *s, bool writing);

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The frame's self-check over its first 28 bytes. */
uint32_t image_frame_check(const uint8_t *frame);

#endif /* VMM_SNAPSHOT_IMAGE_PRIV_H */
