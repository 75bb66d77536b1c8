/* SPDX-License-Identifier: MIT */
/* Writing images: preamble, header, sections, page batches, END. */
#include "snapshot/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "kernel/util/bitmap.h"
#include "snapshot/image_priv.h"
#include "snapshot/stream.h"

/* Zero runs are written out when this many pairs have gathered. */
#define ZERO_RUNS_FLUSH (IMAGE_MAX_RUNS / 2)

/*
 * Writes one section: the frame, then the payload given as up to three
 * pieces (@pad zero bytes go between the second and the third).
 */
static int image_put_section(struct image *img, uint32_t type, uint32_t arg,
			     const void *a, size_t alen, const void *b,
			     size_t blen, size_t pad, const void *c,
			     size_t clen)
{
	static const uint8_t zero[IMAGE_PAGE_SIZE];
	uint8_t frame[IMAGE_FRAME_LEN];
	XXH3_state_t st;
	int ret;

	if (img->ret)
		return img->ret;
	if (img->ended)
		return image_fail(img, -EINVAL, "image already finished");
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, a, alen);
	XXH3_64bits_update(&st, b, blen);
	XXH3_64bits_update(&st, zero, pad);
	XXH3_64bits_update(&st, c, clen);
	put_le32(frame, type);
	put_le32(frame + 4, arg);
	put_le64(frame + 8, alen + blen + pad + clen);
	put_le64(frame + 16, XXH3_64bits_digest(&st));
	put_le32(frame + 24, 0);
	put_le32(frame + 28, image_frame_check(frame));
	ret = stream_write(img->s, frame, sizeof(frame));
	if (!ret && alen)
		ret = stream_write(img->s, a, alen);
	if (!ret && blen)
		ret = stream_write(img->s, b, blen);
	if (!ret && pad)
		ret = stream_write_zeroes(img->s, pad);
	if (!ret && clen)
		ret = stream_write(img->s, c, clen);
	if (ret < 0)
		return image_fail(img, ret, "write failed: %s", strerror(-ret));
	img->nr_sections++;
	return 0;
}

/* Packs a protobuf-c message into a fresh buffer. */
static int image_pack(struct image *img, const ProtobufCMessage *m,
		      uint8_t **buf, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	*buf = malloc(*len ? *len : 1);
	if (!*buf)
		return image_fail(img, -ENOMEM, "out of memory");
	protobuf_c_message_pack(m, *buf);
	return 0;
}

static size_t image_comp_bound(enum image_codec codec, size_t len)
{
	LZ4F_preferences_t prefs = { 0 };

	switch (codec) {
	case IMAGE_CODEC_LZ4:
		prefs.frameInfo.contentSize = len;
		return LZ4F_compressFrameBound(len, &prefs);
	case IMAGE_CODEC_ZSTD:
		return ZSTD_compressBound(len);
	case IMAGE_CODEC_NONE:
		break;
	}
	return 0;
}

int image_writer_create(struct stream *s, const struct image_header *hdr,
			struct image **out)
{
	Vmrun__ImageHeader m;
	uint8_t pre[IMAGE_PREAMBLE_LEN] = { 0 };
	size_t batch_bytes, len;
	struct image *img;
	uint8_t *buf;
	int ret;

	if (hdr->codec > IMAGE_CODEC_ZSTD ||
	    (hdr->aligned && hdr->codec != IMAGE_CODEC_NONE) ||
	    (hdr->cpu_features_len && !hdr->cpu_features))
		return -EINVAL;
	img = image_alloc(s, true);
	if (!img)
		return -ENOMEM;
	img->hdr = *hdr;
	batch_bytes = (size_t)img->batch_pages * IMAGE_PAGE_SIZE;
	img->raw = malloc(batch_bytes);
	img->runs = malloc(2 * img->batch_pages * sizeof(uint64_t));
	img->zruns = malloc(IMAGE_MAX_RUNS * sizeof(uint64_t));
	img->comp_cap = image_comp_bound(hdr->codec, batch_bytes);
	if (img->comp_cap)
		img->comp = malloc(img->comp_cap);
	if (hdr->codec == IMAGE_CODEC_ZSTD)
		img->zc = ZSTD_createCCtx();
	ret = -ENOMEM;
	if (!img->raw || !img->runs || !img->zruns ||
	    (img->comp_cap && !img->comp) ||
	    (hdr->codec == IMAGE_CODEC_ZSTD && !img->zc))
		goto err_destroy;

	stream_hash_reset(s);
	memcpy(pre, IMAGE_MAGIC, IMAGE_MAGIC_LEN);
	put_le32(pre + 8, IMAGE_FORMAT_VERSION);
	ret = stream_write(s, pre, sizeof(pre));
	if (ret < 0)
		goto err_destroy;

	vmrun__image_header__init(&m);
	m.page_size = IMAGE_PAGE_SIZE;
	m.codec = (Vmrun__ImageCodec)hdr->codec;
	m.aligned = hdr->aligned;
	m.batch_pages = img->batch_pages;
	m.cpu_features.data = (uint8_t *)(uintptr_t)hdr->cpu_features;
	m.cpu_features.len = hdr->cpu_features_len;
	m.vcpu_model =
		(char *)(uintptr_t)(hdr->vcpu_model ? hdr->vcpu_model : "");
	m.flags = hdr->flags;
	m.has_base = hdr->has_base;
	m.base_hash = hdr->base_hash;
	m.base_path = (char *)(uintptr_t)(hdr->base_path ? hdr->base_path : "");
	m.rewrites = hdr->rewrites;
	ret = image_pack(img, &m.base, &buf, &len);
	if (ret < 0)
		goto err_destroy;
	ret = image_put_section(img, IMAGE_SEC_HEADER, 0, buf, len, NULL, 0, 0,
				NULL, 0);
	free(buf);
	if (ret < 0)
		goto err_destroy;
	/* The header's pointers are the caller's: keep none. */
	img->hdr.cpu_features = NULL;
	img->hdr.vcpu_model = NULL;
	*out = img;
	return 0;

err_destroy:
	image_destroy(img);
	return ret;
}

int image_write_state(struct image *img, uint32_t type, const void *data,
		      size_t len)
{
	if (len > IMAGE_MAX_STATE_LEN)
		return image_fail(img, -E2BIG, "state message of %zu bytes",
				  len);
	if (image_drain(img) < 0)
		return img->ret;
	return image_put_section(img, IMAGE_SEC_STATE, type, data, len, NULL, 0,
				 0, NULL, 0);
}

int image_write_layout(struct image *img, uint32_t type, const void *data,
		       size_t len)
{
	if (len > IMAGE_MAX_STATE_LEN)
		return image_fail(img, -E2BIG, "layout of %zu bytes", len);
	if (image_drain(img) < 0)
		return img->ret;
	return image_put_section(img, IMAGE_SEC_LAYOUT, type, data, len, NULL,
				 0, 0, NULL, 0);
}

/*
 * Writes one PAGES section: the descriptor for @runs (@nr_runs pairs,
 * @nr pages) and @data in @enc. In the aligned layout the data is padded
 * to start at a page-aligned stream offset.
 */
static int image_put_pages(struct image *img, uint32_t seg,
			   Vmrun__PageEncoding enc, uint64_t *runs,
			   size_t nr_runs, uint64_t nr, const void *data,
			   size_t len)
{
	Vmrun__PageBatch m;
	uint8_t le[4], *buf;
	size_t dlen, pad = 0;
	uint64_t start;
	int ret;

	vmrun__page_batch__init(&m);
	m.segment = seg;
	m.runs = runs;
	m.n_runs = 2 * nr_runs;
	m.encoding = enc;
	m.nr_pages = nr;
	/* A fixed32 that is never 0: the size does not depend on it. */
	m.data_offset = 1;
	dlen = protobuf_c_message_get_packed_size(&m.base);
	if (img->hdr.aligned && len) {
		start = stream_offset(img->s) + IMAGE_FRAME_LEN + 4 + dlen;
		pad = (size_t)(-start & (IMAGE_PAGE_SIZE - 1));
	}
	m.data_offset = (uint32_t)(4 + dlen + pad);
	ret = image_pack(img, &m.base, &buf, &dlen);
	if (ret < 0)
		return ret;
	put_le32(le, (uint32_t)dlen);
	ret = image_put_section(img, IMAGE_SEC_PAGES, 0, le, 4, buf, dlen, pad,
				data, len);
	free(buf);
	if (ret == 0)
		img->nr_pages += nr;
	if (ret == 0 && enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO) {
		img->nr_batches++;
		if (enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW)
			img->nr_raw_batches++;
	}
	return ret;
}

int image_write_job_done(struct image *img, struct image_job *j)
{
	int ret;

	if (j->ret < 0)
		return image_fail(img, j->ret, "%s", j->err);
	if (j->zero) {
		ret = image_put_pages(img, j->seg,
				      VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO,
				      j->runs, j->nr_runs, j->nr, NULL, 0);
		if (ret == 0)
			img->nr_zero_pages += j->nr;
		return ret;
	}
	return image_put_pages(
		img, j->seg, j->enc, j->runs, j->nr_runs, j->nr,
		j->enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW ? j->raw :
								    j->comp,
		j->clen);
}

/*
 * Compresses and writes the gathered batch, raw if it does not shrink;
 * with a pool, hands it to a worker (the gathered pages go with it) and
 * writes it out when it is done, in order.
 */
static int image_flush_batch(struct image *img, uint32_t seg)
{
	size_t len = img->batch_nr * IMAGE_PAGE_SIZE, clen = 0;
	Vmrun__PageEncoding enc;
	struct image_job *j;
	uint8_t *t;
	int ret;

	if (!img->batch_nr)
		return 0;
	if (img->threads) {
		j = image_job_slot(img);
		if (!j)
			return img->ret;
		t = j->raw;
		j->raw = img->raw;
		img->raw = t;
		memcpy(j->runs, img->runs, 2 * img->nr_runs * sizeof(uint64_t));
		j->nr_runs = img->nr_runs;
		j->nr = img->batch_nr;
		j->seg = seg;
		j->zero = false;
		/* Every worker busy and one in line already: this one goes
		 * as it is. */
		if (img->hdr.adaptive && pool_queued(img->pool)) {
			j->ret = 0;
			j->enc = VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW;
			j->clen = len;
			image_job_push(img, j, false);
		} else {
			image_job_push(img, j, true);
		}
		img->nr_runs = 0;
		img->batch_nr = 0;
		return image_jobs_reap(img, false);
	}
	ret = image_compress_to(img->hdr.codec, &img->zc, img->raw, len,
				img->comp, img->comp_cap, &clen, &enc, img->err,
				sizeof(img->err));
	if (ret < 0)
		return image_fail(img, ret, "%s", img->err);
	ret = image_put_pages(
		img, seg, enc, img->runs, img->nr_runs, img->batch_nr,
		enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW ? img->raw :
								 img->comp,
		clen);
	img->nr_runs = 0;
	img->batch_nr = 0;
	return ret;
}

static int image_flush_zero(struct image *img, uint32_t seg)
{
	struct image_job *j;
	uint64_t nr = 0;
	size_t i;
	int ret;

	if (!img->nr_zruns)
		return 0;
	for (i = 0; i < img->nr_zruns; i++)
		nr += img->zruns[2 * i + 1];
	if (img->threads) {
		/* Through the ring, after the batches before it. */
		j = image_job_slot(img);
		if (!j)
			return img->ret;
		memcpy(j->runs, img->zruns,
		       2 * img->nr_zruns * sizeof(uint64_t));
		j->nr_runs = img->nr_zruns;
		j->nr = nr;
		j->seg = seg;
		j->zero = true;
		image_job_push(img, j, false);
		img->nr_zruns = 0;
		return image_jobs_reap(img, false);
	}
	ret = image_put_pages(img, seg,
			      VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO,
			      img->zruns, img->nr_zruns, nr, NULL, 0);
	img->nr_zruns = 0;
	if (ret == 0)
		img->nr_zero_pages += nr;
	return ret;
}

int image_drain(struct image *img)
{
	if (img->ret)
		return img->ret;
	return image_jobs_reap(img, true);
}

/* Appends page @pg to a run list, extending its last run if adjacent. */
static bool runs_add(uint64_t *runs, size_t *nr_runs, size_t max, uint64_t pg)
{
	size_t n = *nr_runs;

	if (n && runs[2 * n - 2] + runs[2 * n - 1] == pg) {
		runs[2 * n - 1]++;
		return true;
	}
	if (n == max)
		return false;
	runs[2 * n] = pg;
	runs[2 * n + 1] = 1;
	*nr_runs = n + 1;
	return true;
}

int image_write_pages(struct image *img, uint32_t seg, const void *mem,
		      uint64_t nr_pages, const uint64_t *bitmap)
{
	return image_write_page_range(img, seg, mem, 0, nr_pages, bitmap);
}

int image_write_page_range(struct image *img, uint32_t seg, const void *mem,
			   uint64_t first, uint64_t end, const uint64_t *bitmap)
{
	const uint8_t *base = mem;
	uint64_t pg;
	int ret;

	if (img->ret)
		return img->ret;
	if (!img->writing)
		return image_fail(img, -EINVAL, "not a writer");
	for (pg = bitmap ? bitmap_next_set(bitmap, end, first) : first;
	     pg < end;
	     pg = bitmap ? bitmap_next_set(bitmap, end, pg + 1) : pg + 1) {
		const uint8_t *page = base + pg * IMAGE_PAGE_SIZE;

		if (image_page_is_zero(page)) {
			if (!runs_add(img->zruns, &img->nr_zruns,
				      ZERO_RUNS_FLUSH, pg)) {
				ret = image_flush_zero(img, seg);
				if (ret < 0)
					return ret;
				runs_add(img->zruns, &img->nr_zruns,
					 ZERO_RUNS_FLUSH, pg);
			}
			continue;
		}
		memcpy(img->raw + img->batch_nr * IMAGE_PAGE_SIZE, page,
		       IMAGE_PAGE_SIZE);
		runs_add(img->runs, &img->nr_runs, img->batch_pages, pg);
		if (++img->batch_nr == img->batch_pages) {
			ret = image_flush_batch(img, seg);
			if (ret < 0)
				return ret;
		}
	}
	ret = image_flush_batch(img, seg);
	if (ret == 0)
		ret = image_flush_zero(img, seg);
	return ret;
}

int image_write_zero_range(struct image *img, uint32_t seg, uint64_t first,
			   uint64_t end)
{
	size_t n;
	int ret;

	if (img->ret)
		return img->ret;
	if (!img->writing)
		return image_fail(img, -EINVAL, "not a writer");
	if (first >= end)
		return 0;
	n = img->nr_zruns;
	if (n && img->zruns[2 * n - 2] + img->zruns[2 * n - 1] == first) {
		img->zruns[2 * n - 1] += end - first;
	} else {
		if (n == ZERO_RUNS_FLUSH) {
			ret = image_flush_zero(img, seg);
			if (ret < 0)
				return ret;
			n = 0;
		}
		img->zruns[2 * n] = first;
		img->zruns[2 * n + 1] = end - first;
		img->nr_zruns = n + 1;
	}
	return image_flush_zero(img, seg);
}

int image_finish(struct image *img, uint64_t *hash)
{
	Vmrun__ImageTrailer m;
	size_t len;
	uint8_t *buf;
	int ret;

	if (img->ret)
		return img->ret;
	if (!img->writing)
		return image_fail(img, -EINVAL, "not a writer");
	if (image_drain(img) < 0)
		return img->ret;
	img->content_hash = stream_hash(img->s);
	vmrun__image_trailer__init(&m);
	m.content_hash = img->content_hash;
	m.nr_sections = img->nr_sections;
	m.nr_pages = img->nr_pages;
	m.nr_zero_pages = img->nr_zero_pages;
	ret = image_pack(img, &m.base, &buf, &len);
	if (ret < 0)
		return ret;
	ret = image_put_section(img, IMAGE_SEC_END, 0, buf, len, NULL, 0, 0,
				NULL, 0);
	free(buf);
	if (ret < 0)
		return ret;
	img->ended = true;
	ret = stream_flush(img->s);
	if (ret < 0)
		return image_fail(img, ret, "flush failed: %s", strerror(-ret));
	if (hash)
		*hash = img->content_hash;
	return 0;
}
