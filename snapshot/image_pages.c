/* SPDX-License-Identifier: MIT */
/*
 * Reading images: the caller's segments and the PAGES sections, checked,
 * indexed, decompressed (in the pool when there is one) and given to
 * segment memory and the sink. The sections around them are read in
 * image_read.c.
 */
#include "snapshot/image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/util/bitmap.h"
#include "snapshot/image_priv.h"
#include "snapshot/stream.h"

/* image_index() reads PAGES payloads up to this size whole. */
#define INDEX_WHOLE_LEN 8192u

int image_add_segment(struct image *img, uint32_t seg, uint64_t nr_pages,
		      void *mem)
{
	struct image_seg *segs, *s;
	size_t i;

	if (img->writing || nr_pages > (UINT64_MAX >> 13))
		return -EINVAL;
	for (i = 0; i < img->nr_segs; i++)
		if (img->segs[i].id == seg)
			return -EEXIST;
	segs = realloc(img->segs, (img->nr_segs + 1) * sizeof(*segs));
	if (!segs)
		return -ENOMEM;
	img->segs = segs;
	s = &segs[img->nr_segs];
	s->id = seg;
	s->nr_pages = nr_pages;
	s->mem = mem;
	s->seen = NULL;
	s->done = NULL;
	s->mine = NULL;
	s->inflight = NULL;
	if (!(img->flags & IMAGE_READ_ALLOW_REWRITE)) {
		s->seen = calloc(MAX(BITMAP_WORDS(nr_pages), 1),
				 sizeof(uint64_t));
		if (!s->seen)
			return -ENOMEM;
	}
	img->nr_segs++;
	return 0;
}

static struct image_seg *image_find_seg(struct image *img, uint32_t id)
{
	size_t i;

	for (i = 0; i < img->nr_segs; i++)
		if (img->segs[i].id == id)
			return &img->segs[i];
	return NULL;
}

int image_segment_done(struct image *img, uint32_t seg, uint64_t *done)
{
	struct image_seg *s = image_find_seg(img, seg);

	if (img->writing || !s || !s->mem)
		return -EINVAL;
	s->done = done;
	return 0;
}

/*
 * An image whose pages may repeat: a page is skipped only if a newer link
 * gave it (in @done and not in @mine, the pages this image wrote), and a
 * zero copy after a data copy must clear what the data copy wrote.
 */
static int image_put_rewrites(struct image *img, struct image_seg *seg,
			      uint64_t first, uint64_t nr, const uint8_t *src)
{
	uint64_t p;

	if (!seg->mine && !(seg->mine = bitmap_alloc(seg->nr_pages)))
		return image_fail(img, -ENOMEM, "out of memory");
	for (p = first; p < first + nr; p++) {
		uint8_t *dst = seg->mem + p * IMAGE_PAGE_SIZE;

		if (seg->done && bitmap_test(seg->done, p) &&
		    !bitmap_test(seg->mine, p))
			continue;
		if (src)
			memcpy(dst, src + (p - first) * IMAGE_PAGE_SIZE,
			       IMAGE_PAGE_SIZE);
		else if (!(img->flags & IMAGE_READ_MEM_ZEROED) ||
			 bitmap_test(seg->mine, p))
			memset(dst, 0, IMAGE_PAGE_SIZE);
		bitmap_set(seg->mine, p);
		if (seg->done)
			bitmap_set(seg->done, p);
	}
	return 0;
}

/* Pages [first, first + nr) of @seg get @src (NULL: zero). */
static void image_put_pages(struct image *img, struct image_seg *seg,
			    uint64_t first, uint64_t nr, const uint8_t *src)
{
	uint64_t p = first, end = first + nr, q;

	if (img->hdr.rewrites) {
		image_put_rewrites(img, seg, first, nr, src);
		return;
	}
	while (p < end) {
		/* [p, q): a stretch the caller has not given yet. */
		if (seg->done && bitmap_test(seg->done, p)) {
			p++;
			continue;
		}
		q = seg->done ? bitmap_next_set(seg->done, end, p + 1) : end;
		if (src)
			memcpy(seg->mem + p * IMAGE_PAGE_SIZE,
			       src + (p - first) * IMAGE_PAGE_SIZE,
			       (q - p) * IMAGE_PAGE_SIZE);
		else if (!(img->flags & IMAGE_READ_MEM_ZEROED))
			memset(seg->mem + p * IMAGE_PAGE_SIZE, 0,
			       (q - p) * IMAGE_PAGE_SIZE);
		if (seg->done)
			bitmap_set_range_atomic(seg->done, p, q - p);
		p = q;
	}
}

int image_decompress_to(ZSTD_DCtx **zd, LZ4F_dctx **lz4d,
			Vmrun__PageEncoding enc, const uint8_t *src, size_t len,
			uint8_t *dst, size_t want, char *err, size_t errlen)
{
	size_t in = 0, out = 0, hint = 1;

	if (enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZSTD) {
		unsigned long long csize;
		size_t r;

		if (!*zd && !(*zd = ZSTD_createDCtx()))
			goto nomem;
		if (ZSTD_findFrameCompressedSize(src, len) != len) {
			snprintf(err, errlen,
				 "zstd batch is not one whole frame");
			return -EBADMSG;
		}
		csize = ZSTD_getFrameContentSize(src, len);
		if (csize != want) {
			snprintf(err, errlen,
				 "zstd frame holds %llu bytes, not %zu", csize,
				 want);
			return -EBADMSG;
		}
		r = ZSTD_decompressDCtx(*zd, dst, want, src, len);
		if (ZSTD_isError(r) || r != want) {
			snprintf(err, errlen, "zstd batch: %s",
				 ZSTD_isError(r) ? ZSTD_getErrorName(r) :
						   "short output");
			return -EBADMSG;
		}
		return 0;
	}
	if (!*lz4d &&
	    LZ4F_isError(LZ4F_createDecompressionContext(lz4d, LZ4F_VERSION)))
		goto nomem;
	LZ4F_resetDecompressionContext(*lz4d);
	while (hint) {
		size_t dn = want - out, sn = len - in;

		hint = LZ4F_decompress(*lz4d, dst + out, &dn, src + in, &sn,
				       NULL);
		if (LZ4F_isError(hint)) {
			snprintf(err, errlen, "lz4 batch: %s",
				 LZ4F_getErrorName(hint));
			return -EBADMSG;
		}
		in += sn;
		out += dn;
		if (hint && !sn && !dn)
			break; /* no progress: input or room ran out */
	}
	if (hint || in != len || out != want) {
		snprintf(err, errlen,
			 "lz4 batch: %zu of %zu bytes used, %zu of %zu "
			 "produced",
			 in, len, out, want);
		return -EBADMSG;
	}
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

/* Decompresses @src into img->raw, which must come out exactly @want. */
static int image_decompress(struct image *img, Vmrun__PageEncoding enc,
			    const uint8_t *src, size_t len, size_t want)
{
	char why[160];
	int ret = image_decompress_to(&img->zd, &img->lz4d, enc, src, len,
				      img->raw, want, why, sizeof(why));

	return ret < 0 ? image_fail(img, ret, "%s", why) : 0;
}

/* Checks a batch's runs against its segment; marks them seen if @mark. */
static int image_check_runs(struct image *img, const Vmrun__PageBatch *m,
			    struct image_seg *seg, bool mark)
{
	uint64_t total = 0, end = 0, p;
	size_t i;

	for (i = 0; i < m->n_runs; i += 2) {
		uint64_t first = m->runs[i], nr = m->runs[i + 1];

		if (!nr || first < end || first + nr < first)
			return image_fail(img, -EBADMSG,
					  "segment %u: run %zu (%" PRIu64
					  ", %" PRIu64
					  ") is empty or out of order",
					  m->segment, i / 2, first, nr);
		end = first + nr;
		total += nr;
		if (!seg)
			continue;
		if (end > seg->nr_pages)
			return image_fail(
				img, -EINVAL,
				"segment %u: pages %" PRIu64 "..%" PRIu64
				" past its %" PRIu64 " pages",
				m->segment, first, end - 1, seg->nr_pages);
		if (!seg->seen)
			continue;
		for (p = first; p < end; p++) {
			if (mark) {
				bitmap_set(seg->seen, p);
			} else if (bitmap_test(seg->seen, p)) {
				return image_fail(img, -EINVAL,
						  "segment %u: page %" PRIu64
						  " given twice",
						  m->segment, p);
			}
		}
	}
	if (!mark && total != m->nr_pages)
		return image_fail(img, -EBADMSG,
				  "segment %u: runs hold %" PRIu64
				  " pages, the batch says %" PRIu64,
				  m->segment, total, m->nr_pages);
	return 0;
}

/*
 * The checks a PAGES descriptor @m gets before its data is used: @desc is
 * the descriptor's length, and the payload is @sec->len bytes. Sets
 * *@dlen to the data's length.
 */
static int image_check_batch(struct image *img, const struct section *sec,
			     const Vmrun__PageBatch *m, uint32_t desc,
			     uint64_t *dlen)
{
	Vmrun__PageEncoding enc = m->encoding;
	const int ret = -EBADMSG;

	if (m->n_runs % 2 || m->n_runs / 2 > IMAGE_MAX_RUNS)
		return image_fail(img, ret, "pages: %zu run numbers",
				  m->n_runs);
	if (m->data_offset < 4 + desc || m->data_offset > sec->len)
		return image_fail(img, ret,
				  "pages: data offset %u outside [%u, %" PRIu64
				  "]",
				  m->data_offset, 4 + desc, sec->len);
	*dlen = sec->len - m->data_offset;
	if (enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO &&
	    (!m->nr_pages || m->nr_pages > img->batch_pages))
		return image_fail(img, ret, "pages: batch of %" PRIu64 " pages",
				  m->nr_pages);
	switch (enc) {
	case VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO:
		if (*dlen)
			return image_fail(img, ret,
					  "pages: zero batch with data");
		return 0;
	case VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW:
		if (*dlen != m->nr_pages * IMAGE_PAGE_SIZE)
			return image_fail(img, ret,
					  "pages: %" PRIu64
					  " raw bytes for %" PRIu64 " pages",
					  *dlen, m->nr_pages);
		if (img->hdr.aligned &&
		    (sec->offset + m->data_offset) % IMAGE_PAGE_SIZE)
			return image_fail(img, ret,
					  "pages: data not page-aligned");
		return 0;
	case VMRUN__PAGE_ENCODING__PAGE_ENCODING_LZ4:
	case VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZSTD:
		if ((enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_LZ4) !=
			    (img->hdr.codec == IMAGE_CODEC_LZ4) ||
		    (enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZSTD) !=
			    (img->hdr.codec == IMAGE_CODEC_ZSTD))
			return image_fail(
				img, ret, "pages: encoding %d in a %s image",
				enc, image_codec_name(img->hdr.codec));
		if (!*dlen || *dlen >= m->nr_pages * IMAGE_PAGE_SIZE)
			return image_fail(img, ret,
					  "pages: %" PRIu64
					  " compressed bytes for %" PRIu64
					  " pages",
					  *dlen, m->nr_pages);
		return 0;
	default:
		return image_fail(img, ret, "pages: unknown encoding %d", enc);
	}
}

/* The batch's runs against its segment; counts its pages. */
static int image_take_runs(struct image *img, const Vmrun__PageBatch *m,
			   struct image_seg **segp)
{
	struct image_seg *seg = image_find_seg(img, m->segment);

	if (!seg && (img->nr_segs || !img->verify))
		return image_fail(img, -EINVAL,
				  "pages for undeclared segment %u",
				  m->segment);
	/* A fetch rereads what the index pass already took. */
	if (!img->fetching) {
		if (image_check_runs(img, m, seg, false) < 0)
			return img->ret;
		image_check_runs(img, m, seg, true);
		img->nr_pages += m->nr_pages;
		if (m->encoding == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO)
			img->nr_zero_pages += m->nr_pages;
	}
	*segp = seg;
	return 0;
}

/* The largest PAGES payload: a full batch, its descriptor and padding. */
static uint64_t image_pages_limit(const struct image *img)
{
	return 4 + IMAGE_MAX_DESC_LEN + IMAGE_PAGE_SIZE +
	       (uint64_t)img->batch_pages * IMAGE_PAGE_SIZE;
}

/* Reads a PAGES payload whole (checking its hash) and its descriptor. */
static int image_read_batch(struct image *img, const struct section *sec,
			    Vmrun__PageBatch **m, uint32_t *desc)
{
	int ret = image_read_payload(img, sec, image_pages_limit(img));

	if (ret < 0)
		return ret;
	if (sec->len < 4 || (*desc = get_le32(img->payload)) > sec->len - 4)
		return image_fail(img, -EBADMSG,
				  "pages: bad descriptor length");
	*m = vmrun__page_batch__unpack(NULL, *desc, img->payload + 4);
	if (!*m)
		return image_fail(img, -EBADMSG,
				  "pages: descriptor does not parse");
	return 0;
}

/*
 * Index mode (image_index()): reads a data batch's descriptor only,
 * checks all that can be checked without the data, gives the batch to
 * the sink and seeks past the data. The descriptor is parsed before the
 * payload's hash can be checked: it is bounded, and image_fetch() checks
 * the hash before any page is used. Small payloads and zero runs, which
 * no fetch will check, are read and checked whole.
 */
static int image_index_pages(struct image *img, const struct section *sec,
			     const struct image_sink *sink)
{
	uint64_t limit, dlen, left = stream_remaining(img->s);
	struct image_batch b = { .offset = sec->offset - IMAGE_FRAME_LEN };
	struct image_seg *seg;
	Vmrun__PageBatch *m;
	uint8_t len4[4];
	uint32_t desc;
	int ret;

	limit = image_pages_limit(img);
	/* Small payloads (zero runs above all) are read and checked whole:
	 * nothing else would check them. */
	if (sec->len <= INDEX_WHOLE_LEN) {
		ret = image_read_batch(img, sec, &m, &desc);
		if (ret < 0)
			return ret;
		goto parsed;
	}
	if (sec->len > limit || sec->len > left || sec->len < 4)
		return image_fail(img, -EBADMSG,
				  "pages at offset %" PRIu64 ": length %" PRIu64
				  " is out of range",
				  sec->offset, sec->len);
	ret = stream_read(img->s, len4, 4);
	if (ret < 0)
		return image_read_fail(img, ret, "a page descriptor");
	desc = get_le32(len4);
	if (desc > sec->len - 4 || desc > IMAGE_MAX_DESC_LEN)
		return image_fail(img, -EBADMSG,
				  "pages: bad descriptor length");
	if (desc > img->payload_cap) {
		uint8_t *p = realloc(img->payload, desc);

		if (!p)
			return image_fail(img, -ENOMEM, "out of memory");
		img->payload = p;
		img->payload_cap = desc;
	}
	ret = stream_read(img->s, img->payload, desc);
	if (ret < 0)
		return image_read_fail(img, ret, "a page descriptor");
	m = vmrun__page_batch__unpack(NULL, desc, img->payload);
	if (!m)
		return image_fail(img, -EBADMSG,
				  "pages: descriptor does not parse");
	if (m->encoding == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO) {
		/* No data will be fetched to check it: read it whole. */
		vmrun__page_batch__free_unpacked(m, NULL);
		ret = stream_seek(img->s, sec->offset);
		if (ret < 0)
			return image_read_fail(img, ret, "a page batch");
		ret = image_read_batch(img, sec, &m, &desc);
		if (ret < 0)
			return ret;
		goto parsed;
	}
	ret = stream_seek(img->s, sec->offset + sec->len);
	if (ret < 0) {
		image_read_fail(img, ret, "a page batch");
		goto out;
	}
parsed:
	if (image_check_batch(img, sec, m, desc, &dlen) < 0 ||
	    image_take_runs(img, m, &seg) < 0)
		goto out;
	b.seg = m->segment;
	b.zero = m->encoding == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO;
	b.nr_pages = m->nr_pages;
	b.runs = m->runs;
	b.nr_runs = m->n_runs / 2;
	if (sink && sink->batch) {
		ret = sink->batch(sink->opaque, &b);
		if (ret < 0)
			image_fail(img, ret, "pages: the sink refused: %s",
				   strerror(-ret));
	}
out:
	vmrun__page_batch__free_unpacked(m, NULL);
	return img->ret;
}

/* True if a page of @m's runs is in a batch the pool has not given back. */
static bool image_overlaps_inflight(const struct image_seg *seg,
				    const Vmrun__PageBatch *m)
{
	size_t i;

	if (!seg->inflight)
		return false;
	for (i = 0; i < m->n_runs; i += 2) {
		uint64_t first = m->runs[i], end = first + m->runs[i + 1];

		if (bitmap_next_set(seg->inflight, end, first) < end)
			return true;
	}
	return false;
}

/* The sink hears of a batch's runs: @data holds them in order. */
static int image_sink_runs(struct image *img, const struct image_sink *sink,
			   const Vmrun__PageBatch *m, const uint8_t *data,
			   uint64_t off)
{
	uint64_t idx = 0;
	size_t i;
	int ret;

	if (!sink || !sink->pages)
		return 0;
	for (i = 0; i < m->n_runs; i += 2) {
		uint64_t first = m->runs[i], nr = m->runs[i + 1];
		const uint8_t *src = data ? data + idx * IMAGE_PAGE_SIZE : NULL;

		ret = sink->pages(sink->opaque, m->segment, first, nr, src,
				  off == IMAGE_NO_OFFSET ?
					  off :
					  off + idx * IMAGE_PAGE_SIZE);
		if (ret < 0)
			return image_fail(img, ret,
					  "pages: the sink refused: %s",
					  strerror(-ret));
		idx += nr;
	}
	return 0;
}

int image_read_job_done(struct image *img, struct image_job *j)
{
	Vmrun__PageBatch *m = j->m;
	struct image_seg *seg = j->sp;
	size_t i;

	if (seg->inflight)
		for (i = 0; i < m->n_runs; i += 2)
			bitmap_clear_range(seg->inflight, m->runs[i],
					   m->runs[i + 1]);
	if (j->ret < 0)
		image_fail(img, j->ret, "%s", j->err);
	else if (!img->verify)
		image_sink_runs(img, &j->sink, m, j->data, j->off);
	vmrun__page_batch__free_unpacked(m, NULL);
	j->m = NULL;
	return img->ret;
}

/*
 * Hands a checked data batch to the pool: the payload buffer goes with
 * it (img->payload gets the slot's), the worker decompresses and applies
 * it, and the sink hears of it when it is reaped, in order. A batch that
 * touches pages still in flight waits for them first.
 */
static int image_pages_async(struct image *img, const struct section *sec,
			     Vmrun__PageBatch *m, uint64_t dlen,
			     struct image_seg *seg,
			     const struct image_sink *sink)
{
	struct image_job *j;
	uint8_t *t;
	size_t i, cap;
	bool apply = seg->mem && !img->verify;

	j = image_job_slot(img);
	if (!j)
		goto fail;
	if ((apply && !seg->inflight &&
	     !(seg->inflight = bitmap_alloc(seg->nr_pages))) ||
	    (apply && img->hdr.rewrites && !seg->mine &&
	     !(seg->mine = bitmap_alloc(seg->nr_pages)))) {
		image_fail(img, -ENOMEM, "out of memory");
		goto fail;
	}
	for (i = 0; apply && i < m->n_runs; i += 2) {
		bitmap_set_range_atomic(seg->inflight, m->runs[i],
					m->runs[i + 1]);
		if (img->hdr.rewrites)
			bitmap_set_range_atomic(seg->mine, m->runs[i],
						m->runs[i + 1]);
	}
	t = j->payload;
	cap = j->payload_cap;
	j->payload = img->payload;
	j->payload_cap = img->payload_cap;
	img->payload = t;
	img->payload_cap = cap;
	j->m = m;
	j->enc = m->encoding;
	j->clen = (size_t)dlen;
	j->sp = seg;
	j->mem = apply ? seg->mem : NULL;
	j->off = m->encoding == VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW ?
			 sec->offset + m->data_offset :
			 IMAGE_NO_OFFSET;
	j->sink = sink ? *sink : (struct image_sink){ 0 };
	image_job_push(img, j, true);
	return image_jobs_reap(img, false);
fail:
	vmrun__page_batch__free_unpacked(m, NULL);
	return img->ret;
}

/* Checks a PAGES payload whole, then applies it. */
int image_do_pages(struct image *img, const struct section *sec,
		   const struct image_sink *sink)
{
	Vmrun__PageEncoding enc;
	Vmrun__PageBatch *m;
	struct image_seg *seg = NULL;
	const uint8_t *data;
	uint64_t dlen, idx = 0;
	uint32_t desc;
	bool taken = false;
	size_t i;
	int ret;

	if (img->indexing)
		return image_index_pages(img, sec, sink);
	ret = image_read_batch(img, sec, &m, &desc);
	if (ret < 0)
		return ret;
	enc = m->encoding;
	if (image_check_batch(img, sec, m, desc, &dlen) < 0)
		goto out_free;
	if (img->threads && !img->fetching) {
		/* The runs are checked before anything goes by them. */
		if (image_take_runs(img, m, &seg) < 0)
			goto out_free;
		taken = true;
		/* Whatever writes pages still in flight waits for them. */
		if (seg && image_overlaps_inflight(seg, m) &&
		    image_jobs_reap(img, true) < 0)
			goto out_free;
		if (seg && !seg->done &&
		    enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO)
			return image_pages_async(img, sec, m, dlen, seg, sink);
	}
	data = img->payload + m->data_offset;
	if (enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_LZ4 ||
	    enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZSTD) {
		if (image_decompress(img, enc, data, (size_t)dlen,
				     (size_t)m->nr_pages * IMAGE_PAGE_SIZE) < 0)
			goto out_free;
		data = img->raw;
	}
	if ((!taken && image_take_runs(img, m, &seg) < 0) || img->verify)
		goto out_free;
	for (i = 0; i < m->n_runs; i += 2) {
		uint64_t first = m->runs[i], nr = m->runs[i + 1];
		const uint8_t *src = NULL;
		uint64_t off = IMAGE_NO_OFFSET;

		if (enc != VMRUN__PAGE_ENCODING__PAGE_ENCODING_ZERO) {
			src = data + idx * IMAGE_PAGE_SIZE;
			idx += nr;
			if (enc == VMRUN__PAGE_ENCODING__PAGE_ENCODING_RAW)
				off = sec->offset +
				      (uint64_t)(src - img->payload);
		}
		if (seg->mem)
			image_put_pages(img, seg, first, nr, src);
		if (sink && sink->pages) {
			ret = sink->pages(sink->opaque, m->segment, first, nr,
					  src, off);
			if (ret < 0) {
				image_fail(img, ret,
					   "pages: the sink refused: %s",
					   strerror(-ret));
				goto out_free;
			}
		}
	}
out_free:
	vmrun__page_batch__free_unpacked(m, NULL);
	return img->ret;
}
