/* SPDX-License-Identifier: MIT */
/*
 * The image reader against corrupt and hostile input: every truncation and
 * every bit flip of small real images, and crafted sections whose
 * checksums hold but whose contents lie.
 */
#include "tests/unit/image_hostile.h"

#include <errno.h>
#include <xxhash.h>
#include <zstd.h>

#include "proto/snapshot.pb-c.h"
#include "snapshot/format.h"
#include "snapshot/image.h"
#include "snapshot/stream.h"
#include "tests/unit/image_gen.h"
#include "tests/unit/unit_tests.h"

#define SMALL_PAGES 4

static int nop_pages(void *opaque, uint32_t seg, uint64_t first, uint64_t nr,
		     const void *data, uint64_t file_off)
{
	(void)opaque;
	(void)seg;
	(void)first;
	(void)nr;
	(void)data;
	(void)file_off;
	return 0;
}

struct offs {
	uint64_t off[16];
	size_t n;
};

static int keep_batch(void *opaque, const struct image_batch *b)
{
	struct offs *o = opaque;

	if (!b->zero && o->n < ARRAY_SIZE(o->off))
		o->off[o->n++] = b->offset;
	return 0;
}

/*
 * Reads @buf as an image of GEN_SEG, whole, or with @lazy the way a lazy
 * restore does (index, then fetch every batch); returns the result and
 * the reason.
 */
static int read_as(const void *buf, size_t len, uint64_t nr_pages, bool lazy,
		   unsigned int threads, char *why, size_t why_len)
{
	static uint8_t mem[16 * 4096];
	struct offs o = { .n = 0 };
	const struct image_sink sink = { .opaque = &o,
					 .pages = nop_pages,
					 .batch = keep_batch };
	struct stream *s;
	struct image *img;
	size_t i;
	int ret;

	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0 &&
			    image_set_threads(img, threads) == 0,
		    "reader");
	ret = image_add_segment(img, GEN_SEG, nr_pages,
				!lazy && nr_pages <= 16 ? mem : NULL);
	if (!ret && lazy) {
		ret = image_index(img, &sink);
		for (i = 0; !ret && i < o.n; i++)
			ret = image_fetch(img, o.off[i], &sink);
	} else if (!ret) {
		ret = image_read(img, NULL);
	}
	snprintf(why, why_len, "%s", image_error(img));
	image_destroy(img);
	stream_close(s);
	return ret;
}

/* Read whole, on the caller's thread and through two codec workers: the
 * same verdict and the same reason either way. */
static int try_read(const void *buf, size_t len, uint64_t nr_pages, char *why,
		    size_t why_len)
{
	char why2[256];
	int ret = read_as(buf, len, nr_pages, false, 0, why, why_len);
	int ret2 = read_as(buf, len, nr_pages, false, 2, why2, sizeof(why2));

	TEST_ASSERT(ret == ret2 && !strcmp(why, why2),
		    "with workers: %d '%s'; without: %d '%s'", ret2, why2, ret,
		    why);
	return ret;
}

static int try_index_fetch(const void *buf, size_t len, char *why,
			   size_t why_len)
{
	return read_as(buf, len, SMALL_PAGES, true, 0, why, why_len);
}

/* The small images: one per codec and the aligned layout. */
static void *small_image(unsigned int variant, size_t *len)
{
	static const enum image_codec codec[] = { IMAGE_CODEC_NONE,
						  IMAGE_CODEC_LZ4,
						  IMAGE_CODEC_ZSTD,
						  IMAGE_CODEC_NONE };
	uint8_t mem[SMALL_PAGES * 4096];
	void *buf;

	gen_pages(mem, 1, GEN_TEXT, 1);
	gen_pages(mem + 4096, 1, GEN_ZERO, 1);
	gen_pages(mem + 2 * 4096, 1, GEN_RANDOM, 1);
	gen_pages(mem + 3 * 4096, 1, GEN_TEXT, 2);
	mem[4096 + 100] = 0; /* page 1 stays zero */
	TEST_ASSERT(gen_image(codec[variant], variant == 3, mem, SMALL_PAGES,
			      NULL, &buf, len) == 0,
		    "write");
	return buf;
}

void test_image_truncated_everywhere(void)
{
	unsigned int v;
	char why[256];

	for (v = 0; v < 4; v++) {
		size_t len, n;
		uint8_t *buf = small_image(v, &len);

		TEST_ASSERT(try_read(buf, len, SMALL_PAGES, why, sizeof(why)) ==
				    0,
			    "variant %u: whole image refused: %s", v, why);
		for (n = 0; n < len; n++) {
			int ret =
				try_read(buf, n, SMALL_PAGES, why, sizeof(why));

			TEST_ASSERT(ret == -EBADMSG && why[0],
				    "variant %u cut at %zu of %zu: %d '%s'", v,
				    n, len, ret, why);
		}
		free(buf);
	}
}

void test_image_bit_flip_everywhere(void)
{
	unsigned int v;
	char why[256];

	for (v = 0; v < 4; v++) {
		size_t len, i;
		uint8_t *buf = small_image(v, &len);

		for (i = 0; i < len; i++) {
			uint8_t bit = (uint8_t)(1u << (i % 8));
			int ret;

			buf[i] ^= bit;
			ret = try_read(buf, len, SMALL_PAGES, why, sizeof(why));
			buf[i] ^= bit;
			TEST_ASSERT((ret == -EBADMSG || ret == -EINVAL ||
				     ret == -EPROTONOSUPPORT) &&
					    why[0],
				    "variant %u flip at %zu of %zu: %d '%s'", v,
				    i, len, ret, why);
		}
		free(buf);
	}
}

/* Every flip is found by the index pass or by a fetch; cuts likewise. */
void test_image_index_bit_flip_everywhere(void)
{
	unsigned int v;
	char why[256];

	for (v = 0; v < 4; v++) {
		size_t len, i;
		uint8_t *buf = small_image(v, &len);

		TEST_ASSERT(try_index_fetch(buf, len, why, sizeof(why)) == 0,
			    "variant %u: whole image refused: %s", v, why);
		for (i = 0; i < len; i++) {
			uint8_t bit = (uint8_t)(1u << (i % 8));
			int ret;

			buf[i] ^= bit;
			ret = try_index_fetch(buf, len, why, sizeof(why));
			buf[i] ^= bit;
			TEST_ASSERT((ret == -EBADMSG || ret == -EINVAL ||
				     ret == -EPROTONOSUPPORT) &&
					    why[0],
				    "variant %u flip at %zu of %zu: %d '%s'", v,
				    i, len, ret, why);
			ret = try_index_fetch(buf, i, why, sizeof(why));
			TEST_ASSERT(ret == -EBADMSG && why[0],
				    "variant %u cut at %zu of %zu: %d '%s'", v,
				    i, len, ret, why);
		}
		free(buf);
	}
}

void test_image_wrong_version(void)
{
	size_t len;
	uint8_t *buf = small_image(2, &len);
	char why[256];
	int ret;

	buf[8] = IMAGE_FORMAT_VERSION + 1;
	ret = try_read(buf, len, SMALL_PAGES, why, sizeof(why));
	TEST_ASSERT(ret == -EPROTONOSUPPORT && strstr(why, "version 2"),
		    "%d '%s'", ret, why);
	memcpy(buf, "VMRUNIMX", 8);
	ret = try_read(buf, len, SMALL_PAGES, why, sizeof(why));
	TEST_ASSERT(ret == -EBADMSG && strstr(why, "magic"), "%d '%s'", ret,
		    why);
	free(buf);
}

/* A growable byte buffer for crafted images. */
struct craft {
	uint8_t buf[65536];
	size_t len;
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Appends a section whose frame claims @claim bytes (the real length if 0). */
static void craft_section(struct craft *c, uint32_t type, uint32_t arg,
			  uint32_t flags, const void *p, size_t len,
			  uint64_t claim)
{
	uint8_t *f = c->buf + c->len;

	TEST_ASSERT(c->len + 32 + len <= sizeof(c->buf), "craft too big");
	put_le(f, type, 4);
	put_le(f + 4, arg, 4);
	put_le(f + 8, claim ? claim : len, 8);
	put_le(f + 16, XXH3_64bits(p, len), 8);
	put_le(f + 24, flags, 4);
	put_le(f + 28, (uint32_t)XXH3_64bits(f, 28), 4);
	memcpy(f + 32, p, len);
	c->len += 32 + len;
}

/* Appends a PAGES section with @runs, @nr pages and @dlen data bytes. */
static void craft_pages(struct craft *c, uint32_t seg, int enc,
			const uint64_t *runs, size_t n_runs, uint64_t nr,
			const void *data, size_t dlen, int offset_delta)
{
	Vmrun__PageBatch m;
	uint8_t p[32768];
	size_t d;

	vmrun__page_batch__init(&m);
	m.segment = seg;
	m.runs = (uint64_t *)(uintptr_t)runs;
	m.n_runs = n_runs;
	m.encoding = (Vmrun__PageEncoding)enc;
	m.nr_pages = nr;
	m.data_offset = 1;
	d = vmrun__page_batch__get_packed_size(&m);
	m.data_offset = (uint32_t)((int)(4 + d) + offset_delta);
	TEST_ASSERT(4 + d + dlen <= sizeof(p), "too big");
	put_le(p, d, 4);
	vmrun__page_batch__pack(&m, p + 4);
	if (dlen)
		memcpy(p + 4 + d, data, dlen);
	craft_section(c, IMAGE_SEC_PAGES, 0, 0, p, 4 + d + dlen, 0);
}

/* The preamble and header of a real zstd image. */
static void craft_start(struct craft *c)
{
	struct image_header hdr = { .codec = IMAGE_CODEC_ZSTD };
	struct stream *s;
	struct image *img;
	const void *data;

	TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	data = stream_mem_data(s, &c->len);
	memcpy(c->buf, data, c->len);
	image_destroy(img);
	stream_close(s);
}

/* Appends a correct END for everything so far (@sections, @pages). */
static void craft_end(struct craft *c, uint64_t sections, uint64_t pages)
{
	Vmrun__ImageTrailer m;
	uint8_t p[64];
	size_t n;

	vmrun__image_trailer__init(&m);
	m.content_hash = XXH3_64bits(c->buf, c->len);
	m.nr_sections = sections;
	m.nr_pages = pages;
	m.nr_zero_pages = pages;
	n = vmrun__image_trailer__pack(&m, p);
	craft_section(c, IMAGE_SEC_END, 0, 0, p, n, 0);
}

#define ZERO 1
#define RAW 2
#define LZ4 3
#define ZSTD 4

void test_image_hostile_sections(void)
{
	static const uint8_t page2[8192];
	static struct craft c;
	uint8_t zbuf[256];
	size_t zlen;
	char why[256];
	int ret;

	/* Each case: crafted, then refused with the listed error. */
#define EXPECT(err, what)                                                     \
	do {                                                                  \
		ret = try_read(c.buf, c.len, 16, why, sizeof(why));           \
		TEST_ASSERT(ret == (err) && !why[0] == !(err), "%s: %d '%s'", \
			    what, ret, why);                                  \
	} while (0)
#define CASE(...)                \
	do {                     \
		craft_start(&c); \
		__VA_ARGS__;     \
	} while (0)

	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 0, 1ULL << 40 }, 2,
			 1ULL << 40, NULL, 0, 0));
	EXPECT(-EINVAL, "a huge run past the segment");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ UINT64_MAX - 1, 4 },
			 2, 4, NULL, 0, 0));
	EXPECT(-EBADMSG, "a run that wraps");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 0, 4, 2, 4 }, 4, 8,
			 NULL, 0, 0));
	EXPECT(-EBADMSG, "overlapping runs");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 3, 0 }, 2, 0, NULL, 0,
			 0));
	EXPECT(-EBADMSG, "an empty run");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 0, 2 }, 2, 3, NULL, 0,
			 0));
	EXPECT(-EBADMSG, "a page count the runs do not hold");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 0, 2, 5 }, 3, 2, NULL,
			 0, 0));
	EXPECT(-EBADMSG, "an odd run list");
	CASE(craft_pages(&c, GEN_SEG, RAW, (uint64_t[]){ 0, 1ULL << 30 }, 2,
			 1ULL << 30, page2, 8192, 0));
	EXPECT(-EBADMSG, "a data batch of 2^30 pages");
	CASE(craft_pages(&c, GEN_SEG, RAW, (uint64_t[]){ 0, 2 }, 2, 2, page2,
			 4096, 0));
	EXPECT(-EBADMSG, "raw data of the wrong size");
	CASE(craft_pages(&c, GEN_SEG, RAW, (uint64_t[]){ 0, 1 }, 2, 1, page2,
			 4096, 8000));
	EXPECT(-EBADMSG, "a data offset past the payload");
	CASE(craft_pages(&c, GEN_SEG, RAW, (uint64_t[]){ 0, 1 }, 2, 1, page2,
			 4096, -2));
	EXPECT(-EBADMSG, "a data offset inside the descriptor");
	CASE(craft_pages(&c, GEN_SEG + 1, ZERO, (uint64_t[]){ 0, 1 }, 2, 1,
			 NULL, 0, 0));
	EXPECT(-EINVAL, "an undeclared segment");
	CASE(craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 2, 3 }, 2, 3, NULL, 0,
			 0);
	     craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 4, 1 }, 2, 1, NULL, 0,
			 0));
	EXPECT(-EINVAL, "a page given twice");
	CASE(craft_pages(&c, GEN_SEG, 9, (uint64_t[]){ 0, 1 }, 2, 1, NULL, 0,
			 0));
	EXPECT(-EBADMSG, "an unknown encoding");

	/* A zstd frame of one page claimed to hold two. */
	zlen = ZSTD_compress(zbuf, sizeof(zbuf), page2, 4096, 1);
	TEST_ASSERT(!ZSTD_isError(zlen), "zstd");
	CASE(craft_pages(&c, GEN_SEG, ZSTD, (uint64_t[]){ 0, 2 }, 2, 2, zbuf,
			 zlen, 0));
	EXPECT(-EBADMSG, "a zstd frame of the wrong size");
	CASE(craft_pages(&c, GEN_SEG, ZSTD, (uint64_t[]){ 0, 1 }, 2, 1, zbuf,
			 zlen - 1, 0));
	EXPECT(-EBADMSG, "a cut zstd frame");
	CASE(craft_pages(&c, GEN_SEG, LZ4, (uint64_t[]){ 0, 1 }, 2, 1, zbuf,
			 zlen, 0));
	EXPECT(-EBADMSG, "lz4 in a zstd image");

	CASE(craft_section(&c, IMAGE_SEC_STATE, 1, 0, "x", 1, 1ULL << 62));
	EXPECT(-EBADMSG, "a state of 2^62 bytes");
	CASE(craft_section(&c, IMAGE_SEC_PAGES, 0, 0, "x", 1, 1ULL << 40));
	EXPECT(-EBADMSG, "pages of 2^40 bytes");
	CASE(craft_section(&c, IMAGE_SEC_STATE, 1, 0, "x", 1, 4096));
	EXPECT(-EBADMSG, "a length past the end of the file");
	CASE(craft_section(&c, IMAGE_SEC_HEADER, 0, 0, "", 0, 0));
	EXPECT(-EBADMSG, "a second header");
	CASE(craft_section(&c, 77, 0, 0, "abc", 3, 0));
	EXPECT(-EBADMSG, "an unknown section that may not be skipped");
	CASE(craft_section(&c, IMAGE_SEC_STATE, 1, 0x10, "abc", 3, 0));
	EXPECT(-EBADMSG, "unknown frame flags");
	CASE(craft_section(&c, IMAGE_SEC_PAGES, 3, 0, "abcd", 4, 0));
	EXPECT(-EBADMSG, "an argument on a PAGES frame");
	CASE(craft_end(&c, 5, 0));
	EXPECT(-EBADMSG, "END with the wrong section count");
	CASE(craft_end(&c, 1, 0); c.buf[c.len++] = 0);
	EXPECT(-EBADMSG, "a byte after END");

	/* The well-formed crafts read: the harness itself is right. */
	CASE(craft_section(&c, 77, 0, IMAGE_SECF_SKIPPABLE, "abc", 3, 0);
	     craft_pages(&c, GEN_SEG, ZERO, (uint64_t[]){ 1, 2, 5, 3 }, 4, 5,
			 NULL, 0, 0);
	     craft_end(&c, 3, 5));
	EXPECT(0, "a skippable unknown section and zero runs");
#undef CASE
#undef EXPECT
}

void test_image_payload_checksum_mismatch(void)
{
	size_t len;
	uint8_t *buf = small_image(1, &len);
	size_t first = IMAGE_PREAMBLE_LEN, second;
	char why[256];
	int ret;

	/* Corrupt the first state payload and re-seal its frame only. */
	second = first + IMAGE_FRAME_LEN +
		 (buf[first + 8] | (size_t)buf[first + 9] << 8);
	buf[second + IMAGE_FRAME_LEN] ^= 1;
	ret = try_read(buf, len, SMALL_PAGES, why, sizeof(why));
	TEST_ASSERT(ret == -EBADMSG && strstr(why, "payload checksum"),
		    "%d '%s'", ret, why);
	free(buf);
}
