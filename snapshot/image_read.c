/* SPDX-License-Identifier: MIT */
/*
 * Reading images. Nothing from the stream is used before its checksum
 * holds: a frame's own check before its length is believed, the payload's
 * hash before it is parsed, and every count and page number against the
 * limits in format.h and the caller's segments before memory is touched.
 * This file holds the preamble, header, section walk, END, verify, index
 * and fetch; segments and PAGES sections are in image_pages.c.
 */
#include "snapshot/image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "snapshot/image_priv.h"
#include "snapshot/stream.h"

/* Payloads are read in pieces this big, so a lying length costs little. */
#define READ_CHUNK (1u << 20)

int image_read_fail(struct image *img, int ret, const char *what)
{
	if (ret == -ENODATA || ret == -EPIPE)
		return image_fail(img, -EBADMSG,
				  "truncated: the stream ends in %s at offset "
				  "%" PRIu64,
				  what, stream_offset(img->s));
	return image_fail(img, ret, "read error in %s: %s", what,
			  strerror(-ret));
}

int image_reader_create(struct stream *s, unsigned int flags,
			struct image **out)
{
	struct image *img;

	if (flags & ~(IMAGE_READ_ALLOW_REWRITE | IMAGE_READ_MEM_ZEROED))
		return -EINVAL;
	img = image_alloc(s, false);
	if (!img)
		return -ENOMEM;
	img->flags = flags;
	stream_hash_reset(s);
	*out = img;
	return 0;
}

/*
 * A libFuzzer build (meson -Dfuzz=true defines the macro) reads on past
 * checksum mismatches, so that mutated inputs reach what the checksums
 * otherwise guard: state decoding, layouts, page batches. Never in a
 * build that reads real images.
 */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECKSUMS 0
#else
#define CHECKSUMS 1
#endif

static int image_read_frame(struct image *img, struct section *sec)
{
	uint8_t f[IMAGE_FRAME_LEN];
	uint64_t at = stream_offset(img->s);
	int ret;

	ret = stream_read(img->s, f, sizeof(f));
	if (ret < 0)
		return image_read_fail(img, ret, "a section frame");
	if (CHECKSUMS && get_le32(f + 28) != image_frame_check(f))
		return image_fail(img, -EBADMSG,
				  "section frame at offset %" PRIu64
				  ": checksum mismatch",
				  at);
	sec->type = get_le32(f);
	sec->arg = get_le32(f + 4);
	sec->len = get_le64(f + 8);
	sec->hash = get_le64(f + 16);
	sec->flags = get_le32(f + 24);
	sec->offset = at + IMAGE_FRAME_LEN;
	if (sec->flags & ~IMAGE_SECF_KNOWN)
		return image_fail(img, -EBADMSG,
				  "section at offset %" PRIu64
				  ": unknown flags %#x",
				  at, sec->flags);
	return 0;
}

/*
 * Reads @sec's payload into img->payload, growing the buffer as bytes
 * arrive, and checks its hash.
 */
int image_read_payload(struct image *img, const struct section *sec,
		       uint64_t limit)
{
	uint64_t left = stream_remaining(img->s);
	size_t done = 0;
	int ret;

	if (sec->len > limit)
		return image_fail(img, -EBADMSG,
				  "section type %u at offset %" PRIu64
				  ": length %" PRIu64
				  " over the limit %" PRIu64,
				  sec->type, sec->offset, sec->len, limit);
	if (sec->len > left)
		return image_fail(
			img, -EBADMSG,
			"truncated: section type %u at offset %" PRIu64
			" needs %" PRIu64 " bytes, %" PRIu64 " remain",
			sec->type, sec->offset, sec->len, left);
	while (done < sec->len) {
		size_t n = (size_t)MIN(sec->len - done, (uint64_t)READ_CHUNK);

		if (done + n > img->payload_cap) {
			size_t cap = MAX(img->payload_cap * 2, done + n);
			uint8_t *p;

			cap = MIN(cap, (size_t)sec->len);
			p = realloc(img->payload, cap);
			if (!p)
				return image_fail(img, -ENOMEM,
						  "out of memory");
			img->payload = p;
			img->payload_cap = cap;
		}
		ret = stream_read(img->s, img->payload + done, n);
		if (ret < 0)
			return image_read_fail(img, ret, "a section payload");
		done += n;
	}
	if (CHECKSUMS && XXH3_64bits(img->payload, done) != sec->hash)
		return image_fail(img, -EBADMSG,
				  "section type %u at offset %" PRIu64
				  ": payload checksum mismatch",
				  sec->type, sec->offset);
	return 0;
}

int image_read_header(struct image *img, const struct image_header **hdr)
{
	uint8_t pre[IMAGE_PREAMBLE_LEN];
	Vmrun__ImageHeader *m;
	struct section sec;
	uint32_t version;
	int ret;

	if (img->ret)
		return img->ret;
	if (img->writing)
		return image_fail(img, -EINVAL, "not a reader");
	if (img->header_done)
		goto out;
	ret = stream_read(img->s, pre, sizeof(pre));
	if (ret < 0)
		return image_read_fail(img, ret, "the preamble");
	if (memcmp(pre, IMAGE_MAGIC, IMAGE_MAGIC_LEN))
		return image_fail(img, -EBADMSG,
				  "not a vmrun image (bad magic)");
	version = get_le32(pre + 8);
	if (version != IMAGE_FORMAT_VERSION)
		return image_fail(img, -EPROTONOSUPPORT,
				  "image format version %u is not supported "
				  "(this vmrun reads version %u)",
				  version, IMAGE_FORMAT_VERSION);
	if (get_le32(pre + 12))
		return image_fail(img, -EBADMSG,
				  "preamble: reserved word is not zero");
	ret = image_read_frame(img, &sec);
	if (ret < 0)
		return ret;
	if (sec.type != IMAGE_SEC_HEADER || sec.arg)
		return image_fail(img, -EBADMSG,
				  "first section is type %u, not the header",
				  sec.type);
	ret = image_read_payload(img, &sec, IMAGE_MAX_HEADER_LEN);
	if (ret < 0)
		return ret;
	m = vmrun__image_header__unpack(NULL, (size_t)sec.len, img->payload);
	if (!m)
		return image_fail(img, -EBADMSG, "header does not parse");
	img->hdr_msg = m;
	if (m->page_size != IMAGE_PAGE_SIZE)
		return image_fail(img, -EBADMSG, "page size %u, not 4096",
				  m->page_size);
	if ((unsigned int)m->codec > IMAGE_CODEC_ZSTD)
		return image_fail(img, -EBADMSG, "unknown codec %u",
				  (unsigned int)m->codec);
	if (m->aligned && m->codec != VMRUN__IMAGE_CODEC__IMAGE_CODEC_NONE)
		return image_fail(img, -EBADMSG,
				  "aligned layout with a compressing codec");
	if (!m->batch_pages || m->batch_pages > IMAGE_MAX_BATCH_PAGES)
		return image_fail(img, -EBADMSG, "batch of %u pages",
				  m->batch_pages);
	img->batch_pages = m->batch_pages;
	img->raw = malloc((size_t)img->batch_pages * IMAGE_PAGE_SIZE);
	if (!img->raw)
		return image_fail(img, -ENOMEM, "out of memory");
	img->hdr.codec = (enum image_codec)m->codec;
	img->hdr.aligned = m->aligned;
	img->hdr.cpu_features = m->cpu_features.data;
	img->hdr.cpu_features_len = m->cpu_features.len;
	img->hdr.vcpu_model = m->vcpu_model;
	img->hdr.flags = m->flags;
	img->hdr.has_base = m->has_base;
	img->hdr.base_hash = m->base_hash;
	img->hdr.base_path = m->base_path[0] ? m->base_path : NULL;
	img->hdr.rewrites = m->rewrites;
	/* Rewrites are the header's to allow: no page is refused twice. */
	if (m->rewrites)
		img->flags |= IMAGE_READ_ALLOW_REWRITE;
	for (size_t i = 0; m->rewrites && i < img->nr_segs; i++) {
		free(img->segs[i].seen);
		img->segs[i].seen = NULL;
	}
	if (!m->has_base && (m->base_hash || img->hdr.base_path))
		return image_fail(img, -EBADMSG,
				  "a base named in a full image");
	img->header_done = true;
	img->nr_sections = 1;
out:
	if (hdr)
		*hdr = &img->hdr;
	return 0;
}

static int image_do_end(struct image *img, const struct section *sec,
			uint64_t hash)
{
	Vmrun__ImageTrailer *m;
	int ret;

	ret = image_read_payload(img, sec, IMAGE_MAX_END_LEN);
	if (ret < 0)
		return ret;
	m = vmrun__image_trailer__unpack(NULL, (size_t)sec->len, img->payload);
	if (!m)
		return image_fail(img, -EBADMSG, "END does not parse");
	/* Index mode seeks over data: only the counts can be compared. */
	if (CHECKSUMS && m->content_hash != hash && !img->indexing)
		image_fail(img, -EBADMSG, "content hash mismatch");
	else if (m->nr_sections != img->nr_sections ||
		 m->nr_pages != img->nr_pages ||
		 m->nr_zero_pages != img->nr_zero_pages)
		image_fail(img, -EBADMSG,
			   "END counts %" PRIu64 " sections, %" PRIu64
			   " pages; the image holds %" PRIu64 ", %" PRIu64,
			   m->nr_sections, m->nr_pages, img->nr_sections,
			   img->nr_pages);
	if (img->indexing)
		hash = m->content_hash;
	vmrun__image_trailer__free_unpacked(m, NULL);
	if (img->ret)
		return img->ret;
	img->content_hash = hash;
	img->ended = true;
	return 1;
}

static int image_read_section(struct image *img, const struct image_sink *sink);

/*
 * Batches in the pool are all applied before any other section is read
 * (state comes after the pages it describes, and END vouches for them
 * all), and all finished, applied or not, before a failure is returned:
 * nothing writes the caller's memory once it has heard of the failure.
 */
int image_read_next(struct image *img, const struct image_sink *sink)
{
	int ret = image_read_section(img, sink);

	if (ret != 0 && img->count)
		image_jobs_reap(img, true);
	return img->ret ? img->ret : ret;
}

static int image_read_section(struct image *img, const struct image_sink *sink)
{
	struct section sec;
	uint64_t hash;
	int ret;

	if (!img->header_done) {
		ret = image_read_header(img, NULL);
		if (ret < 0)
			return ret;
	}
	if (img->ret)
		return img->ret;
	if (img->ended)
		return 1;
	/*
	 * About to wait for the peer: what the workers have finished is
	 * applied and reported first (a migration's source waits to hear
	 * that its last pages are in before it sends more).
	 */
	if (img->count && stream_read_would_block(img->s, IMAGE_FRAME_LEN) &&
	    image_jobs_reap(img, true) < 0)
		return img->ret;
	hash = stream_hash(img->s);
	ret = image_read_frame(img, &sec);
	if (ret < 0)
		return ret;
	if (sec.arg && sec.type != IMAGE_SEC_STATE &&
	    sec.type != IMAGE_SEC_LAYOUT)
		return image_fail(img, -EBADMSG,
				  "section type %u at offset %" PRIu64
				  ": argument %u",
				  sec.type, sec.offset, sec.arg);
	if (sec.type != IMAGE_SEC_PAGES && img->count &&
	    image_jobs_reap(img, true) < 0)
		return img->ret;
	switch (sec.type) {
	case IMAGE_SEC_HEADER:
		return image_fail(img, -EBADMSG,
				  "a second header at offset %" PRIu64,
				  sec.offset);
	case IMAGE_SEC_END:
		return image_do_end(img, &sec, hash);
	case IMAGE_SEC_PAGES:
		ret = image_do_pages(img, &sec, sink);
		break;
	case IMAGE_SEC_STATE:
	case IMAGE_SEC_LAYOUT:
		ret = image_read_payload(img, &sec, IMAGE_MAX_STATE_LEN);
		if (ret < 0 || img->verify || !sink)
			break;
		if (sec.type == IMAGE_SEC_STATE && sink->state)
			ret = sink->state(sink->opaque, sec.arg, img->payload,
					  (size_t)sec.len);
		else if (sec.type == IMAGE_SEC_LAYOUT && sink->layout)
			ret = sink->layout(sink->opaque, sec.arg, img->payload,
					   (size_t)sec.len);
		if (ret < 0)
			image_fail(img, ret,
				   "section type %u: the sink refused: %s",
				   sec.type, strerror(-ret));
		break;
	default:
		if (!(sec.flags & IMAGE_SECF_SKIPPABLE))
			return image_fail(img, -EBADMSG,
					  "unknown section type %u at offset "
					  "%" PRIu64,
					  sec.type, sec.offset);
		ret = image_read_payload(img, &sec, IMAGE_MAX_STATE_LEN);
		break;
	}
	if (ret < 0)
		return img->ret ? img->ret : ret;
	img->nr_sections++;
	return 0;
}

int image_read(struct image *img, const struct image_sink *sink)
{
	uint64_t left;
	int ret;

	do
		ret = image_read_next(img, sink);
	while (ret == 0);
	if (ret < 0)
		return ret;
	left = stream_remaining(img->s);
	if (left && left != UINT64_MAX)
		return image_fail(img, -EBADMSG,
				  "%" PRIu64 " bytes after the END section",
				  left);
	return 0;
}

int image_verify(struct image *img)
{
	img->verify = true;
	return image_read(img, NULL);
}

int image_index(struct image *img, const struct image_sink *sink)
{
	int ret;

	img->indexing = true;
	ret = image_read(img, sink);
	img->indexing = false;
	return ret;
}

int image_fetch(struct image *img, uint64_t offset,
		const struct image_sink *sink)
{
	struct section sec;
	int ret;

	if (img->ret)
		return img->ret;
	if (!img->ended)
		return image_fail(img, -EINVAL, "fetch before the index");
	ret = stream_seek(img->s, offset);
	if (ret < 0)
		return image_read_fail(img, ret, "a page batch");
	ret = image_read_frame(img, &sec);
	if (ret < 0)
		return ret;
	if (sec.type != IMAGE_SEC_PAGES || sec.arg)
		return image_fail(img, -EBADMSG,
				  "offset %" PRIu64
				  " holds section type %u, not pages",
				  offset, sec.type);
	img->fetching = true;
	ret = image_do_pages(img, &sec, sink);
	img->fetching = false;
	return ret;
}

int image_file_content_hash(int fd, uint64_t *hash)
{
	uint8_t buf[IMAGE_FRAME_LEN + IMAGE_MAX_END_LEN];
	Vmrun__ImageTrailer *m;
	off_t size = lseek(fd, 0, SEEK_END);
	size_t n, o;
	ssize_t r;

	if (size < 0)
		return -errno;
	if (size < IMAGE_PREAMBLE_LEN + 2 * IMAGE_FRAME_LEN)
		return -EBADMSG;
	n = (size_t)MIN((uint64_t)size - IMAGE_PREAMBLE_LEN,
			(uint64_t)sizeof(buf));
	r = pread(fd, buf, n, size - (off_t)n);
	if (r < 0)
		return -errno;
	if ((size_t)r != n)
		return -EBADMSG;
	/* The END frame whose payload runs exactly to the end of the file. */
	for (o = 0; o + IMAGE_FRAME_LEN <= n; o++) {
		const uint8_t *f = buf + o;
		uint64_t len = n - o - IMAGE_FRAME_LEN;

		if (get_le32(f) != IMAGE_SEC_END || get_le64(f + 8) != len ||
		    get_le32(f + 28) != image_frame_check(f) ||
		    XXH3_64bits(f + IMAGE_FRAME_LEN, (size_t)len) !=
			    get_le64(f + 16))
			continue;
		m = vmrun__image_trailer__unpack(NULL, (size_t)len,
						 f + IMAGE_FRAME_LEN);
		if (!m)
			return -EBADMSG;
		*hash = m->content_hash;
		vmrun__image_trailer__free_unpacked(m, NULL);
		return 0;
	}
	return -EBADMSG;
}
