/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_IMAGE_PRIV_H
#define VMM_SNAPSHOT_IMAGE_PRIV_H

/* Shared by image.c (common), image_write.c, image_read.c and
 * image_pages.c. */

#include <lz4frame.h>
#include <zstd.h>

#include "proto/snapshot.pb-c.h"
#include "snapshot/format.h"
#include "snapshot/image.h"
#include "snapshot/pool.h"

/* A section as its frame describes it. */
struct section {
	uint32_t type, arg, flags;
	uint64_t len, hash;
	uint64_t offset; /* stream offset of the payload */
};

struct image_seg {
	uint32_t id;
	uint64_t nr_pages;
	uint8_t *mem;	/* NULL: pages go to the sink only */
	uint64_t *seen; /* pages given so far, unless rewrites are allowed */
	uint64_t *done; /* the caller's: pages not to write, and written */
	uint64_t *mine; /* pages this image wrote (images with rewrites) */
	/* Pages of batches handed to the pool and not yet reaped: a batch
	 * that touches one waits for them (the last copy must land last). */
	uint64_t *inflight;
};

/*
 * A PAGES section on its way through the pool (image_set_threads()).
 * Writer: @raw holds the gathered pages, the worker compresses them into
 * @comp; a zero run list goes through the ring as a job that is already
 * done, so that sections keep their order. Reader: @payload holds the
 * checked section, the worker decompresses it (into guest memory when
 * the batch is one run) and copies its runs to @mem.
 */
struct image_job {
	struct pool_job pj;
	struct image *img;
	bool zero;	/* writer: a zero run list, no data */
	bool submitted; /* in the pool (else done at once) */
	uint32_t seg;
	uint64_t *runs; /* (first, count) pairs */
	size_t nr_runs;
	uint64_t nr;  /* pages */
	uint8_t *raw; /* batch_pages * 4096 */
	uint8_t *comp;
	size_t clen;
	Vmrun__PageEncoding enc;
	int ret;
	char err[160];
	/* Reader. */
	Vmrun__PageBatch *m;
	uint8_t *payload;
	size_t payload_cap;
	struct image_seg *sp; /* [main thread] */
	uint8_t *mem;	      /* the segment's memory, NULL: apply nothing */
	const uint8_t *data;  /* the pages, once the job has run */
	uint64_t off;	      /* stream offset of raw data (or NO_OFFSET) */
	struct image_sink sink;
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
	uint64_t nr_batches, nr_raw_batches; /* writer: data batches */

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

	/* The pool and its ordered ring of jobs: @nr_jobs slots, @count of
	 * them in use from @head, oldest first. */
	unsigned int threads; /* image_set_threads(): 0, all on the caller's */
	struct pool *pool;    /* started with the first batch */
	struct image_job *jobs;
	unsigned int nr_jobs, head, count;
	bool reaping;
};

/* The ring's next free slot, reaping (and so waiting for) the oldest job
 * if all are in use; NULL on a failure (img->ret). */
struct image_job *image_job_slot(struct image *img);
/* Puts @j (the slot image_job_slot() gave) at the ring's tail; submits it
 * to the pool unless it is done already. */
void image_job_push(struct image *img, struct image_job *j, bool submit);
/* Reaps the oldest jobs while they are done (@wait: all of them, waiting);
 * returns img->ret. */
int image_jobs_reap(struct image *img, bool wait);
/* Per direction: what reaping a job does (writes it out or hands it to
 * the sink). */
int image_write_job_done(struct image *img, struct image_job *j);
int image_read_job_done(struct image *img, struct image_job *j);
/* image_read.c: fails @img for a read error @ret in @what (a short read
 * is a truncated image). */
int image_read_fail(struct image *img, int ret, const char *what);
/* image_read.c: reads @sec's payload (at most @limit bytes) into
 * img->payload and checks its hash. */
int image_read_payload(struct image *img, const struct section *sec,
		       uint64_t limit);
/* image_pages.c: reads a PAGES section (its frame @sec just read) and
 * applies it, hands it to the pool, or indexes it. */
int image_do_pages(struct image *img, const struct section *sec,
		   const struct image_sink *sink);
/* The zstd level images are written at: the fast end, since images are
 * written while the guest waits. */
#define IMAGE_ZSTD_LEVEL 1
/* Compresses @len bytes at @src into @dst (@cap bytes) with @codec;
 * *@enc stays RAW (and *@clen @len) if it does not shrink. */
int image_compress_to(enum image_codec codec, ZSTD_CCtx **zc,
		      const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
		      size_t *clen, Vmrun__PageEncoding *enc, char *err,
		      size_t errlen);
/* Decompresses @len bytes at @src (encoding @enc) into @dst, which must
 * come out exactly @want bytes; per-thread contexts in *@zd and *@lz4d. */
int image_decompress_to(ZSTD_DCtx **zd, LZ4F_dctx **lz4d,
			Vmrun__PageEncoding enc, const uint8_t *src, size_t len,
			uint8_t *dst, size_t want, char *err, size_t errlen);

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
