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
	/*
	 * A reader's batches still in workers come first in the stream: the
	 * first failure is the first in stream order, whichever thread
	 * found it, as without workers.
	 */
	if (!img->writing && img->count && !img->reaping) {
		image_jobs_reap(img, true);
		if (img->ret)
			return img->ret;
	}
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

/* A worker's codec contexts, made as its jobs first need them. */
struct image_wctx {
	ZSTD_CCtx *zc;
	ZSTD_DCtx *zd;
	LZ4F_dctx *lz4d;
};

static void image_wctx_free(void *p)
{
	struct image_wctx *w = p;

	ZSTD_freeCCtx(w->zc);
	ZSTD_freeDCtx(w->zd);
	LZ4F_freeDecompressionContext(w->lz4d);
	free(w);
}

int image_compress_to(enum image_codec codec, ZSTD_CCtx **zc,
		      const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
		      size_t *clen, Vmrun__PageEncoding *enc, char *err,
		      size_t errlen)
{
	LZ4F_preferences_t prefs = { 0 };
	size_t n = len;

	*enc = VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW;
	*clen = len;
	switch (codec) {
	case IMAGE_CODEC_ZSTD:
		if (!*zc && !(*zc = ZSTD_createCCtx())) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		n = ZSTD_compressCCtx(*zc, dst, cap, src, len,
				      IMAGE_ZSTD_LEVEL);
		if (ZSTD_isError(n)) {
			snprintf(err, errlen, "zstd: %s", ZSTD_getErrorName(n));
			return -EIO;
		}
		if (n < len)
			*enc = VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZSTD;
		break;
	case IMAGE_CODEC_LZ4:
		prefs.frameInfo.contentSize = len;
		prefs.frameInfo.blockMode = LZ4F_blockIndependent;
		n = LZ4F_compressFrame(dst, cap, src, len, &prefs);
		if (LZ4F_isError(n)) {
			snprintf(err, errlen, "lz4: %s", LZ4F_getErrorName(n));
			return -EIO;
		}
		if (n < len)
			*enc = VMRUN__PAGE_ENCODING__PAGE_ENCODING_LZ4;
		break;
	case IMAGE_CODEC_NONE:
		return 0;
	}
	if (*enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW)
		*clen = n;
	return 0;
}

/*
 * Reader: decompresses the batch (straight into guest memory when it is
 * one run and is applied) and copies its runs into the segment.
 */
static void job_decompress(struct image_job *j, struct image_wctx *w)
{
	const Vmrun__PageBatch *m = j->m;
	const uint8_t *src = j->payload + m->data_offset;
	const size_t want = (size_t)m->nr_pages * IMAGE_PAGE_SIZE;
	const size_t dlen = j->clen;
	bool in_place = j->mem && m->n_runs == 2;
	uint8_t *dst;
	uint64_t idx = 0;
	size_t i;

	j->data = src;
	if (j->enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW) {
		dst = in_place ? j->mem + m->runs[0] * IMAGE_PAGE_SIZE : j->raw;
		j->ret =
			image_decompress_to(&w->zd, &w->lz4d, j->enc, src, dlen,
					    dst, want, j->err, sizeof(j->err));
		j->data = dst;
		if (j->ret < 0 || in_place)
			return;
	}
	if (!j->mem)
		return;
	for (i = 0; i < m->n_runs; i += 2) {
		uint64_t first = m->runs[i], nr = m->runs[i + 1];

		memcpy(j->mem + first * IMAGE_PAGE_SIZE,
		       j->data + idx * IMAGE_PAGE_SIZE, nr * IMAGE_PAGE_SIZE);
		idx += nr;
	}
}

static void image_job_run(struct pool_job *pj, void **wctx)
{
	struct image_job *j = (struct image_job *)pj;
	struct image_wctx *w = *wctx;

	if (!w && !(w = *wctx = calloc(1, sizeof(*w)))) {
		snprintf(j->err, sizeof(j->err), "out of memory");
		j->ret = -ENOMEM;
		return;
	}
	if (j->img->writing)
		j->ret = image_compress_to(j->img->hdr.codec, &w->zc, j->raw,
					   j->nr * IMAGE_PAGE_SIZE, j->comp,
					   j->img->comp_cap, &j->clen, &j->enc,
					   j->err, sizeof(j->err));
	else
		job_decompress(j, w);
}

int image_set_threads(struct image *img, unsigned int threads)
{
	unsigned int n;

	if (img->threads || img->nr_pages || img->nr_sections > 1 ||
	    threads > POOL_MAX_THREADS)
		return -EINVAL;
	/* Uncompressed pages cost a copy: no worker would earn its keep. */
	if (!threads || (img->writing && img->hdr.codec == IMAGE_CODEC_NONE))
		return 0;
	n = 2 * threads + 2;
	img->jobs = calloc(n, sizeof(*img->jobs));
	if (!img->jobs)
		return -ENOMEM;
	img->nr_jobs = n;
	/* The threads start with the first batch: an image that fails
	 * before its pages, or has none, never starts them. */
	img->threads = threads;
	return 0;
}

/* Runs (pairs) a writer's slot holds: a data batch or a zero run list. */
static size_t job_runs_cap(const struct image *img)
{
	return MAX((size_t)img->batch_pages, (size_t)IMAGE_MAX_RUNS / 2);
}

struct image_job *image_job_slot(struct image *img)
{
	struct image_job *j;
	int ret;

	if (!img->pool) {
		ret = pool_create(img->threads, image_wctx_free, &img->pool);
		if (ret < 0) {
			image_fail(img, ret, "starting codec threads: %s",
				   strerror(-ret));
			return NULL;
		}
	}
	if (img->count == img->nr_jobs && image_jobs_reap(img, false) == 0 &&
	    img->count == img->nr_jobs) {
		pool_wait(img->pool, &img->jobs[img->head].pj);
		image_jobs_reap(img, false);
	}
	if (img->ret)
		return NULL;
	j = &img->jobs[(img->head + img->count) % img->nr_jobs];
	if (!j->raw)
		j->raw = malloc((size_t)img->batch_pages * IMAGE_PAGE_SIZE);
	if (img->writing && !j->runs)
		j->runs = malloc(2 * job_runs_cap(img) * sizeof(uint64_t));
	if (img->writing && !j->comp)
		j->comp = malloc(img->comp_cap);
	if (!j->raw || (img->writing && (!j->runs || !j->comp))) {
		image_fail(img, -ENOMEM, "out of memory");
		return NULL;
	}
	j->img = img;
	j->ret = 0;
	j->err[0] = 0;
	j->pj.fn = image_job_run;
	return j;
}

void image_job_push(struct image *img, struct image_job *j, bool submit)
{
	img->count++;
	j->submitted = submit;
	if (submit)
		pool_submit(img->pool, &j->pj);
}

int image_jobs_reap(struct image *img, bool wait)
{
	bool reaping = img->reaping;

	img->reaping = true;
	while (img->count) {
		struct image_job *j = &img->jobs[img->head];

		if (j->submitted) {
			if (wait)
				pool_wait(img->pool, &j->pj);
			else if (!pool_done(img->pool, &j->pj))
				break;
		}
		img->head = (img->head + 1) % img->nr_jobs;
		img->count--;
		j->submitted = false;
		/* After a failure, jobs are only waited for. */
		if (img->ret) {
			if (!img->writing && j->m) {
				vmrun__page_batch__free_unpacked(j->m, NULL);
				j->m = NULL;
			}
			continue;
		}
		if (img->writing)
			image_write_job_done(img, j);
		else
			image_read_job_done(img, j);
	}
	img->reaping = reaping;
	return img->ret;
}

void image_destroy(struct image *img)
{
	size_t i;

	if (!img)
		return;
	pool_destroy(img->pool);
	for (i = 0; i < img->nr_jobs; i++) {
		free(img->jobs[i].raw);
		free(img->jobs[i].runs);
		free(img->jobs[i].comp);
		free(img->jobs[i].payload);
		if (img->jobs[i].m)
			vmrun__page_batch__free_unpacked(img->jobs[i].m, NULL);
	}
	free(img->jobs);
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
		bitmap_free(img->segs[i].inflight);
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

void image_batch_counts(const struct image *img, uint64_t *batches,
			uint64_t *raw)
{
	*batches = img->nr_batches;
	*raw = img->nr_raw_batches;
}

void image_counts(const struct image *img, uint64_t *pages,
		  uint64_t *zero_pages)
{
	*pages = img->nr_pages;
	*zero_pages = img->nr_zero_pages;
}
