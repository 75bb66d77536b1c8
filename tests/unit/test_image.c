/* SPDX-License-Identifier: MIT */
/* The image format: round trips, layouts, back ends (see also _hostile). */
#include "snapshot/image.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel/util/bitmap.h"
#include "snapshot/stream.h"
#include "tests/unit/image_gen.h"
#include "tests/unit/image_hostile.h"
#include "tests/unit/unit_tests.h"

#define NR_PAGES 700 /* two full batches and a part, in mixed pages */

struct collect {
	unsigned int states, layouts, runs;
	uint64_t pages, zero_pages;
	uint32_t last_state;
	bool misaligned;
	int fd; /* when >= 0, raw data must match the file at file_off */
	bool file_mismatch;
};

static int collect_state(void *opaque, uint32_t type, const void *data,
			 size_t len)
{
	struct collect *c = opaque;

	(void)data;
	(void)len;
	c->states++;
	c->last_state = type;
	return 0;
}

static int collect_layout(void *opaque, uint32_t type, const void *data,
			  size_t len)
{
	struct collect *c = opaque;

	(void)data;
	if (type == GEN_LAYOUT && len == 40)
		c->layouts++;
	return 0;
}

static int collect_pages(void *opaque, uint32_t seg, uint64_t first,
			 uint64_t nr, const void *data, uint64_t file_off)
{
	struct collect *c = opaque;

	(void)seg;
	(void)first;
	c->runs++;
	c->pages += nr;
	if (!data)
		c->zero_pages += nr;
	if (data && file_off != IMAGE_NO_OFFSET && file_off % 4096)
		c->misaligned = true;
	if (data && c->fd >= 0) {
		void *m;

		if (file_off == IMAGE_NO_OFFSET)
			return -EINVAL;
		m = mmap(NULL, nr * 4096, PROT_READ, MAP_PRIVATE, c->fd,
			 (off_t)file_off);
		if (m == MAP_FAILED || memcmp(m, data, nr * 4096))
			c->file_mismatch = true;
		if (m != MAP_FAILED)
			munmap(m, nr * 4096);
	}
	return 0;
}

static const struct image_sink collect_sink = {
	.state = collect_state,
	.layout = collect_layout,
	.pages = collect_pages,
};

/* Codec workers read_image() reads with. */
static unsigned int read_threads;

/* Reads @buf into @mem; returns 0 or the error, with the reason printed. */
static int read_image(const void *buf, size_t len, uint8_t *mem,
		      uint64_t nr_pages, unsigned int flags, struct collect *c)
{
	struct image_sink sink = collect_sink;
	struct stream *s;
	struct image *img;
	int ret;

	sink.opaque = c;
	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, flags, &img) == 0, "reader");
	TEST_ASSERT(image_set_threads(img, read_threads) == 0, "threads");
	ret = image_add_segment(img, GEN_SEG, nr_pages, mem);
	if (!ret)
		ret = image_read(img, &sink);
	if (ret)
		TEST_ASSERT(image_error(img)[0], "error %d without a reason",
			    ret);
	image_destroy(img);
	stream_close(s);
	return ret;
}

static void round_trip(enum image_codec codec, enum gen_kind kind)
{
	uint8_t *mem = malloc(NR_PAGES * 4096), *back = malloc(NR_PAGES * 4096);
	struct collect c = { .fd = -1 };
	size_t len;
	void *buf;
	int ret;

	gen_pages(mem, NR_PAGES, kind, 42);
	memset(back, 0xaa, NR_PAGES * 4096);
	TEST_ASSERT(gen_image(codec, false, mem, NR_PAGES, NULL, &buf, &len) ==
			    0,
		    "write");
	ret = read_image(buf, len, back, NR_PAGES, 0, &c);
	TEST_ASSERT(ret == 0, "%s: read: %d", image_codec_name(codec), ret);
	TEST_ASSERT(!memcmp(mem, back, NR_PAGES * 4096), "%s: pages differ",
		    image_codec_name(codec));
	TEST_ASSERT(c.states == 2 && c.layouts == 1 &&
			    c.last_state == GEN_STATE_B,
		    "states %u layouts %u", c.states, c.layouts);
	TEST_ASSERT(c.pages == NR_PAGES, "pages %llu",
		    (unsigned long long)c.pages);
	if (kind == GEN_ZERO)
		TEST_ASSERT(c.zero_pages == NR_PAGES && len < 4096,
			    "zero pages %llu, %zu bytes",
			    (unsigned long long)c.zero_pages, len);
	if (kind == GEN_TEXT && codec != IMAGE_CODEC_NONE)
		TEST_ASSERT(len < NR_PAGES * 4096 / 2, "%s: %zu bytes",
			    image_codec_name(codec), len);
	if (kind == GEN_RANDOM)
		TEST_ASSERT(len < NR_PAGES * 4096 + 8192, "%s: %zu bytes",
			    image_codec_name(codec), len);
	free(buf);
	free(mem);
	free(back);
}

/* Each codec and kind of page, written and read with no codec workers,
 * with one, and with three (images of the same bytes either way). */
static void test_image_round_trip_codecs(void)
{
	enum image_codec codecs[] = { IMAGE_CODEC_NONE, IMAGE_CODEC_LZ4,
				      IMAGE_CODEC_ZSTD };
	enum gen_kind kinds[] = { GEN_MIXED, GEN_ZERO, GEN_RANDOM, GEN_TEXT };
	static const unsigned int threads[] = { 0, 1, 3 };
	uint8_t *mem = malloc(NR_PAGES * 4096);
	unsigned int i, j, t;

	for (t = 0; t < ARRAY_SIZE(threads); t++) {
		gen_image_threads = threads[t];
		read_threads = threads[(t + 1) % ARRAY_SIZE(threads)];
		for (i = 0; i < ARRAY_SIZE(codecs); i++)
			for (j = 0; j < ARRAY_SIZE(kinds); j++)
				round_trip(codecs[i], kinds[j]);
	}
	/* The workers change where the work is done, not one byte. */
	gen_pages(mem, NR_PAGES, GEN_MIXED, 7);
	for (i = 0; i < ARRAY_SIZE(codecs); i++) {
		void *a, *b;
		size_t alen, blen;

		gen_image_threads = 0;
		TEST_ASSERT(gen_image(codecs[i], false, mem, NR_PAGES, NULL, &a,
				      &alen) == 0,
			    "write");
		gen_image_threads = 3;
		TEST_ASSERT(gen_image(codecs[i], false, mem, NR_PAGES, NULL, &b,
				      &blen) == 0,
			    "write");
		TEST_ASSERT(alen == blen && !memcmp(a, b, alen),
			    "%s: the image differs with workers",
			    image_codec_name(codecs[i]));
		free(a);
		free(b);
	}
	gen_image_threads = 0;
	read_threads = 0;
	free(mem);
}

/*
 * Adaptive writing (batches raw while every worker is busy): whatever
 * mix of raw and compressed batches it makes, the image reads back
 * exactly, and the counts add up; without it, compressible pages never
 * go raw. (How many go raw depends on the CPUs' pace: tests/perf's
 * image_perf --adaptive measures it.)
 */
static void test_image_adaptive_reads_back(void)
{
	enum { N = 4096 };
	uint8_t *mem = malloc(N * 4096), *back = malloc(N * 4096);
	unsigned int k;

	gen_pages(mem, N, GEN_TEXT, 9);
	for (k = 0; k < 2; k++) {
		struct image_header hdr = { .codec = IMAGE_CODEC_ZSTD,
					    .adaptive = k == 1 };
		struct collect c = { .fd = -1 };
		uint64_t batches, raw;
		struct stream *s;
		struct image *img;
		const void *data;
		size_t len;

		TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
		TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0 &&
				    image_set_threads(img, 1) == 0,
			    "writer");
		TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, N, NULL) ==
					    0 &&
				    image_finish(img, NULL) == 0,
			    "write: %s", image_error(img));
		image_batch_counts(img, &batches, &raw);
		image_destroy(img);
		TEST_ASSERT(batches == N / 256 && raw <= batches,
			    "%llu batches, %llu raw",
			    (unsigned long long)batches,
			    (unsigned long long)raw);
		TEST_ASSERT(k == 1 || raw == 0,
			    "%llu text batches raw without adaptive",
			    (unsigned long long)raw);
		data = stream_mem_data(s, &len);
		memset(back, 0x33, N * 4096);
		read_threads = 2;
		TEST_ASSERT(read_image(data, len, back, N, 0, &c) == 0, "read");
		read_threads = 0;
		TEST_ASSERT(!memcmp(back, mem, N * 4096),
			    "adaptive %u: pages differ", k);
		stream_close(s);
	}
	free(mem);
	free(back);
}

/*
 * A live save's image through codec workers on both sides: rounds that
 * rewrite pages as other data, as zero, and back, so that a batch often
 * rewrites pages an earlier one still in a worker holds. Read into zeroed
 * memory (zero pages skipped unless they follow data) and into dirty
 * memory, the last copy of every page must win, and the sink hears of
 * every page of every round.
 */
static void test_image_threads_rewrites_in_order(void)
{
	enum { N = 3000, ROUNDS = 12 };
	uint8_t *mem = malloc(N * 4096), *back = malloc(N * 4096);
	uint64_t *dirty = bitmap_alloc(N), total = 0, x = 12345;
	struct image_header hdr = { .rewrites = true };
	static const enum image_codec codecs[] = { IMAGE_CODEC_LZ4,
						   IMAGE_CODEC_ZSTD };
	unsigned int k, r, c;
	uint64_t p;

	for (c = 0; c < ARRAY_SIZE(codecs); c++) {
		struct stream *s;
		struct image *img;
		const void *data;
		size_t len;

		hdr.codec = codecs[c];
		total = 0;
		gen_pages(mem, N, GEN_MIXED, 3);
		TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
		TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0 &&
				    image_set_threads(img, 3) == 0,
			    "writer");
		TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, N, NULL) == 0,
			    "round 0");
		total += N;
		for (r = 1; r < ROUNDS; r++) {
			bitmap_zero(dirty, N);
			for (k = 0; k < N / 3; k++) {
				x = x * 6364136223846793005ULL +
				    1442695040888963407ULL;
				p = (x >> 33) % N;
				if (bitmap_test(dirty, p))
					continue;
				bitmap_set(dirty, p);
				total++;
				/* A third zero, the rest new data. */
				if ((x >> 20) % 3 == 0)
					memset(mem + p * 4096, 0, 4096);
				else
					memset(mem + p * 4096,
					       (int)(r * 7 + (x >> 40) % 200 +
						     1),
					       4096);
			}
			TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, N,
						      dirty) == 0,
				    "round %u: %s", r, image_error(img));
		}
		TEST_ASSERT(image_finish(img, NULL) == 0, "finish");
		image_destroy(img);
		data = stream_mem_data(s, &len);
		for (k = 0; k < 2; k++) {
			struct collect col = { .fd = -1 };

			memset(back, k ? 0x5a : 0, N * 4096);
			read_threads = 3;
			TEST_ASSERT(read_image(data, len, back, N,
					       k ? 0 : IMAGE_READ_MEM_ZEROED,
					       &col) == 0,
				    "%s read %u", image_codec_name(codecs[c]),
				    k);
			TEST_ASSERT(!memcmp(back, mem, N * 4096),
				    "%s read %u: not the last copies",
				    image_codec_name(codecs[c]), k);
			TEST_ASSERT(col.pages == total,
				    "the sink heard of %llu pages of %llu",
				    (unsigned long long)col.pages,
				    (unsigned long long)total);
		}
		read_threads = 0;
		stream_close(s);
	}
	bitmap_free(dirty);
	free(mem);
	free(back);
}

static void test_image_bitmap_writes_only_set_pages(void)
{
	uint8_t *mem = malloc(NR_PAGES * 4096), *back = malloc(NR_PAGES * 4096);
	uint64_t *bm = bitmap_alloc(NR_PAGES);
	struct collect c = { .fd = -1 };
	uint64_t pg;
	size_t len;
	void *buf;

	gen_pages(mem, NR_PAGES, GEN_MIXED, 9);
	memset(back, 0xaa, NR_PAGES * 4096);
	for (pg = 0; pg < NR_PAGES; pg += 1 + pg % 5)
		bitmap_set(bm, pg);
	TEST_ASSERT(gen_image(IMAGE_CODEC_ZSTD, false, mem, NR_PAGES, bm, &buf,
			      &len) == 0,
		    "write");
	TEST_ASSERT(read_image(buf, len, back, NR_PAGES, 0, &c) == 0, "read");
	for (pg = 0; pg < NR_PAGES; pg++) {
		const uint8_t *want = mem + pg * 4096;
		uint8_t untouched[4096];

		memset(untouched, 0xaa, sizeof(untouched));
		if (!bitmap_test(bm, pg))
			want = untouched;
		TEST_ASSERT(!memcmp(back + pg * 4096, want, 4096),
			    "page %llu (bit %d)", (unsigned long long)pg,
			    bitmap_test(bm, pg));
	}
	TEST_ASSERT(c.pages == bitmap_weight(bm, NR_PAGES), "pages %llu",
		    (unsigned long long)c.pages);
	bitmap_free(bm);
	free(buf);
	free(mem);
	free(back);
}

static void test_image_aligned_layout_mmaps(void)
{
	char path[] = "/tmp/vmrun-image-XXXXXX";
	uint8_t *mem = malloc(NR_PAGES * 4096), *back = malloc(NR_PAGES * 4096);
	struct image_header hdr = { .codec = IMAGE_CODEC_NONE,
				    .aligned = true };
	struct image_sink sink = collect_sink;
	struct collect c = { .fd = -1 };
	struct stream *s;
	struct image *img;
	int fd;

	fd = mkstemp(path);
	TEST_ASSERT(fd >= 0, "mkstemp");
	gen_pages(mem, NR_PAGES, GEN_MIXED, 5);
	TEST_ASSERT(stream_open_file_write(path, &s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	/* Odd-sized state first, so the pages need padding. */
	TEST_ASSERT(image_write_state(img, 1, "xyz", 3) == 0, "state");
	TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, NR_PAGES, NULL) == 0,
		    "pages");
	TEST_ASSERT(image_finish(img, NULL) == 0, "finish");
	TEST_ASSERT(stream_sync(s) == 0, "sync");
	image_destroy(img);
	stream_close(s);

	hdr.codec = IMAGE_CODEC_ZSTD;
	TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == -EINVAL,
		    "aligned needs codec none");
	stream_close(s);

	c.fd = fd;
	sink.opaque = &c;
	TEST_ASSERT(stream_open_file_read(path, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_add_segment(img, GEN_SEG, NR_PAGES, back) == 0,
		    "segment");
	TEST_ASSERT(image_read(img, &sink) == 0, "read: %s", image_error(img));
	TEST_ASSERT(!c.misaligned && !c.file_mismatch,
		    "misaligned %d, mmap differs %d", c.misaligned,
		    c.file_mismatch);
	TEST_ASSERT(!memcmp(mem, back, NR_PAGES * 4096), "pages differ");
	image_destroy(img);
	stream_close(s);
	close(fd);
	unlink(path);
	free(mem);
	free(back);
}

static void test_image_verify_applies_nothing(void)
{
	uint8_t *mem = malloc(64 * 4096), *back = malloc(64 * 4096);
	struct stream *s;
	struct image *img;
	size_t len;
	void *buf;

	gen_pages(mem, 64, GEN_MIXED, 3);
	memset(back, 0x55, 64 * 4096);
	TEST_ASSERT(gen_image(IMAGE_CODEC_LZ4, false, mem, 64, NULL, &buf,
			      &len) == 0,
		    "write");
	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_add_segment(img, GEN_SEG, 64, back) == 0, "seg");
	TEST_ASSERT(image_verify(img) == 0, "verify: %s", image_error(img));
	TEST_ASSERT(back[0] == 0x55 && back[64 * 4096 - 1] == 0x55,
		    "verify wrote memory");
	image_destroy(img);
	stream_close(s);

	/* With no segment declared, verify still checks the structure. */
	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_verify(img) == 0, "verify: %s", image_error(img));
	image_destroy(img);
	stream_close(s);
	free(buf);
	free(mem);
	free(back);
}

static void test_image_header_fields_and_base(void)
{
	static const uint8_t feat[] = { 1, 2, 3, 0, 5 };
	struct image_header hdr = {
		.codec = IMAGE_CODEC_LZ4,
		.cpu_features = feat,
		.cpu_features_len = sizeof(feat),
		.vcpu_model = "EPYC-v4",
		.flags = 0x1234,
		.has_base = true,
		.base_hash = 0xfeedfacecafebeefULL,
	};
	const struct image_header *got;
	const void *data;
	uint64_t hash, rhash;
	struct stream *s, *r;
	struct image *img;
	size_t len;

	TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	TEST_ASSERT(image_finish(img, &hash) == 0, "finish");
	TEST_ASSERT(image_write_state(img, 1, "", 0) == -EINVAL,
		    "a write after finish");
	image_destroy(img);
	data = stream_mem_data(s, &len);
	TEST_ASSERT(stream_open_mem_read(data, len, &r) == 0, "open");
	TEST_ASSERT(image_reader_create(r, 0, &img) == 0, "reader");
	TEST_ASSERT(image_read_header(img, &got) == 0, "header: %s",
		    image_error(img));
	TEST_ASSERT(got->codec == IMAGE_CODEC_LZ4 && !got->aligned &&
			    got->cpu_features_len == sizeof(feat) &&
			    !memcmp(got->cpu_features, feat, sizeof(feat)) &&
			    !strcmp(got->vcpu_model, "EPYC-v4") &&
			    got->flags == 0x1234 && got->has_base &&
			    got->base_hash == hdr.base_hash,
		    "header fields differ");
	TEST_ASSERT(image_read(img, NULL) == 0, "read: %s", image_error(img));
	rhash = image_content_hash(img);
	TEST_ASSERT(rhash == hash, "content hash %llx, written %llx",
		    (unsigned long long)rhash, (unsigned long long)hash);
	image_destroy(img);
	stream_close(r);
	stream_close(s);
}

static void test_image_rewrite_needs_flag(void)
{
	uint8_t mem[8 * 4096], back[8 * 4096];
	struct collect c = { .fd = -1 };
	struct image_header hdr = { .codec = IMAGE_CODEC_ZSTD };
	const void *data;
	struct stream *s;
	struct image *img;
	size_t len;

	memset(mem, 1, sizeof(mem));
	TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, 8, NULL) == 0, "1");
	memset(mem + 4096, 2, 4096);
	TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, 8, NULL) == 0, "2");
	TEST_ASSERT(image_finish(img, NULL) == 0, "finish");
	image_destroy(img);
	data = stream_mem_data(s, &len);
	TEST_ASSERT(read_image(data, len, back, 8, 0, &c) == -EINVAL,
		    "a page given twice without the flag");
	TEST_ASSERT(read_image(data, len, back, 8, IMAGE_READ_ALLOW_REWRITE,
			       &c) == 0,
		    "with the flag");
	TEST_ASSERT(!memcmp(back, mem, sizeof(mem)), "last write wins");
	stream_close(s);
}

struct image_sender {
	int fd;
	const uint8_t *mem;
	int ret;
};

static void *image_sender_fn(void *arg)
{
	struct image_sender *is = arg;
	struct image_header hdr = { .codec = IMAGE_CODEC_LZ4 };
	struct stream *s;
	struct image *img;

	is->ret = stream_open_fd(is->fd, &s);
	if (is->ret)
		return NULL;
	is->ret = image_writer_create(s, &hdr, &img);
	if (!is->ret) {
		is->ret = image_write_pages(img, GEN_SEG, is->mem, NR_PAGES,
					    NULL);
		if (!is->ret)
			is->ret = image_finish(img, NULL);
		image_destroy(img);
	}
	stream_close(s);
	close(is->fd);
	return NULL;
}

static void test_image_over_pipe(void)
{
	uint8_t *mem = malloc(NR_PAGES * 4096), *back = malloc(NR_PAGES * 4096);
	struct image_sender is;
	struct stream *s;
	struct image *img;
	pthread_t t;
	int p[2];

	gen_pages(mem, NR_PAGES, GEN_MIXED, 11);
	TEST_ASSERT(pipe(p) == 0, "pipe");
	is = (struct image_sender){ p[1], mem, 0 };
	TEST_ASSERT(pthread_create(&t, NULL, image_sender_fn, &is) == 0, "t");
	TEST_ASSERT(stream_open_fd(p[0], &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_add_segment(img, GEN_SEG, NR_PAGES, back) == 0, "s");
	TEST_ASSERT(image_read(img, NULL) == 0, "read: %s", image_error(img));
	pthread_join(t, NULL);
	TEST_ASSERT(is.ret == 0, "sender: %d", is.ret);
	TEST_ASSERT(!memcmp(mem, back, NR_PAGES * 4096), "pages differ");
	image_destroy(img);
	stream_close(s);
	close(p[0]);
	free(mem);
	free(back);
}

/* What image_index() found, and image_fetch() gave back. */
struct ix {
	uint8_t *mem;
	uint64_t offs[64];
	size_t n;
	uint64_t pages, zero_pages, fetched;
	bool pages_during_index;
	bool indexing;
};

static int ix_batch(void *opaque, const struct image_batch *b)
{
	struct ix *x = opaque;

	x->pages += b->nr_pages;
	if (b->zero) {
		x->zero_pages += b->nr_pages;
		return 0;
	}
	if (x->n == ARRAY_SIZE(x->offs))
		return -E2BIG;
	x->offs[x->n++] = b->offset;
	return 0;
}

static int ix_pages(void *opaque, uint32_t seg, uint64_t first, uint64_t nr,
		    const void *data, uint64_t file_off)
{
	struct ix *x = opaque;

	(void)seg;
	(void)file_off;
	if (x->indexing)
		x->pages_during_index = true;
	if (!data)
		return -EINVAL; /* fetches are of data batches only */
	memcpy(x->mem + first * 4096, data, nr * 4096);
	x->fetched += nr;
	return 0;
}

/* Indexes the image on @s, then fetches its batches last first. */
static int index_fetch(struct stream *s, uint64_t nr_pages, struct ix *x,
		       char *why, size_t wlen)
{
	const struct image_sink sink = { .opaque = x,
					 .pages = ix_pages,
					 .batch = ix_batch };
	struct image *img;
	size_t i;
	int ret;

	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	ret = image_add_segment(img, GEN_SEG, nr_pages, NULL);
	x->indexing = true;
	if (!ret)
		ret = image_index(img, &sink);
	x->indexing = false;
	for (i = x->n; !ret && i > 0; i--)
		ret = image_fetch(img, x->offs[i - 1], &sink);
	snprintf(why, wlen, "%s", image_error(img));
	image_destroy(img);
	return ret;
}

/* Random access: every codec and the aligned layout, memory and file. */
static void test_image_index_and_fetch(void)
{
	static const enum image_codec codec[] = { IMAGE_CODEC_NONE,
						  IMAGE_CODEC_LZ4,
						  IMAGE_CODEC_ZSTD,
						  IMAGE_CODEC_NONE };
	uint8_t *mem = malloc(NR_PAGES * 4096), *back = malloc(NR_PAGES * 4096);
	char path[] = "/tmp/vmrun-ix-XXXXXX", why[256];
	unsigned int v, f;

	gen_pages(mem, NR_PAGES, GEN_MIXED, 5);
	for (v = 0; v < 4; v++) {
		size_t len;
		void *buf;

		TEST_ASSERT(gen_image(codec[v], v == 3, mem, NR_PAGES, NULL,
				      &buf, &len) == 0,
			    "write");
		for (f = 0; f < 2; f++) {
			struct ix x = { .mem = back };
			struct stream *s;
			int fd, ret;

			memset(back, 0, NR_PAGES * 4096);
			if (f) {
				fd = mkstemp(path);
				TEST_ASSERT(fd >= 0 && write(fd, buf, len) ==
							       (ssize_t)len,
					    "temp file");
				close(fd);
				TEST_ASSERT(stream_open_file_read(path, &s) ==
						    0,
					    "open");
				unlink(path);
				memcpy(path + strlen(path) - 6, "XXXXXX", 6);
			} else {
				TEST_ASSERT(
					stream_open_mem_read(buf, len, &s) == 0,
					"open");
			}
			ret = index_fetch(s, NR_PAGES, &x, why, sizeof(why));
			stream_close(s);
			TEST_ASSERT(ret == 0, "variant %u/%u: %d %s", v, f, ret,
				    why);
			TEST_ASSERT(x.n >= 2 && x.pages == NR_PAGES &&
					    x.fetched ==
						    NR_PAGES - x.zero_pages,
				    "variant %u/%u: %zu batches, %llu pages, "
				    "%llu fetched",
				    v, f, x.n, (unsigned long long)x.pages,
				    (unsigned long long)x.fetched);
			TEST_ASSERT(!x.pages_during_index,
				    "the index pass delivered pages");
			TEST_ASSERT(!memcmp(mem, back, NR_PAGES * 4096),
				    "variant %u/%u: pages differ", v, f);
		}
		free(buf);
	}
	free(mem);
	free(back);
}

/* image_fetch() before the index, or of something not a batch. */
static void test_image_fetch_refusals(void)
{
	uint8_t *mem = malloc(NR_PAGES * 4096);
	struct ix x = { .mem = mem };
	const struct image_sink sink = { .opaque = &x,
					 .pages = ix_pages,
					 .batch = ix_batch };
	struct stream *s;
	struct image *img;
	size_t len;
	void *buf;
	int ret;

	gen_pages(mem, NR_PAGES, GEN_MIXED, 6);
	TEST_ASSERT(gen_image(IMAGE_CODEC_LZ4, false, mem, NR_PAGES, NULL, &buf,
			      &len) == 0,
		    "write");
	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_add_segment(img, GEN_SEG, NR_PAGES, NULL) == 0, "s");
	ret = image_fetch(img, 16, &sink);
	TEST_ASSERT(ret == -EINVAL && strstr(image_error(img), "index"),
		    "fetch before the index: %d %s", ret, image_error(img));
	image_destroy(img);
	stream_close(s);

	TEST_ASSERT(stream_open_mem_read(buf, len, &s) == 0, "open");
	TEST_ASSERT(image_reader_create(s, 0, &img) == 0, "reader");
	TEST_ASSERT(image_add_segment(img, GEN_SEG, NR_PAGES, NULL) == 0, "s");
	TEST_ASSERT(image_index(img, &sink) == 0, "index: %s",
		    image_error(img));
	ret = image_fetch(img, 16, &sink); /* the header's frame */
	TEST_ASSERT(ret == -EBADMSG && strstr(image_error(img), "not pages"),
		    "fetch of the header: %d %s", ret, image_error(img));
	image_destroy(img);
	stream_close(s);
	free(buf);
	free(mem);
}

/*
 * An image whose header allows rewrites (a live save): read without the
 * flag, the last copy of each page wins, a zero copy after a data copy
 * clears it even into zeroed memory, and a page a newer link gave (the
 * done bitmap) is left alone however often this image repeats it.
 */
static void test_image_header_rewrites(void)
{
	uint8_t mem[8 * 4096], back[8 * 4096], want[8 * 4096];
	struct image_header hdr = { .codec = IMAGE_CODEC_LZ4,
				    .rewrites = true };
	const struct image_header *h;
	uint64_t *done = bitmap_alloc(8);
	const void *data;
	struct stream *s, *r;
	struct image *img;
	unsigned int k;
	size_t len;

	memset(mem, 1, sizeof(mem));
	TEST_ASSERT(stream_open_mem_write(&s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, 8, NULL) == 0, "1");
	memset(mem + 4096, 2, 4096);
	memset(mem + 3 * 4096, 0, 4096);
	memset(mem + 5 * 4096, 3, 4096);
	TEST_ASSERT(image_write_pages(img, GEN_SEG, mem, 8, NULL) == 0, "2");
	TEST_ASSERT(image_finish(img, NULL) == 0, "finish");
	image_destroy(img);
	data = stream_mem_data(s, &len);
	for (k = 0; k < 2; k++) {
		memset(back, k ? 0x77 : 0, sizeof(back));
		TEST_ASSERT(stream_open_mem_read(data, len, &r) == 0, "open");
		TEST_ASSERT(image_reader_create(r,
						k ? 0 : IMAGE_READ_MEM_ZEROED,
						&img) == 0,
			    "reader");
		TEST_ASSERT(image_read_header(img, &h) == 0 && h->rewrites,
			    "header: %s", image_error(img));
		TEST_ASSERT(image_add_segment(img, GEN_SEG, 8, back) == 0, "s");
		memcpy(want, mem, sizeof(want));
		if (k) {
			/* Page 5 came from a newer link. */
			bitmap_zero(done, 8);
			bitmap_set(done, 5);
			memset(want + 5 * 4096, 0x77, 4096);
			TEST_ASSERT(image_segment_done(img, GEN_SEG, done) == 0,
				    "done");
		}
		TEST_ASSERT(image_read(img, NULL) == 0, "read %u: %s", k,
			    image_error(img));
		TEST_ASSERT(!memcmp(back, want, sizeof(back)),
			    "read %u: not the last copies", k);
		TEST_ASSERT(!k || bitmap_weight(done, 8) == 8,
			    "every page done after the read");
		image_destroy(img);
		stream_close(r);
	}
	/* Random access: the index and fetches see both copies, in order. */
	{
		struct ix x = { .mem = back };
		char why[256];
		int ret;

		memset(back, 0, sizeof(back));
		TEST_ASSERT(stream_open_mem_read(data, len, &r) == 0, "open");
		ret = index_fetch(r, 8, &x, why, sizeof(why));
		stream_close(r);
		TEST_ASSERT(ret == 0 && x.pages == 16, "index: %d %s, %llu",
			    ret, why, (unsigned long long)x.pages);
	}
	bitmap_free(done);
	stream_close(s);
}

static void test_image_zero_page_detection(void)
{
	static uint8_t page[4096] __attribute__((aligned(4096)));
	unsigned int i;

	TEST_ASSERT(image_page_is_zero(page), "zero page");
	for (i = 0; i < 4096; i++) {
		page[i] = 0x80;
		TEST_ASSERT(!image_page_is_zero(page), "byte %u set", i);
		page[i] = 0;
	}
}

const struct test_case image_tests[] = {
	{ "round_trip_codecs", test_image_round_trip_codecs },
	{ "threads_rewrites_in_order", test_image_threads_rewrites_in_order },
	{ "adaptive_reads_back", test_image_adaptive_reads_back },
	{ "bitmap_writes_only_set_pages",
	  test_image_bitmap_writes_only_set_pages },
	{ "aligned_layout_mmaps", test_image_aligned_layout_mmaps },
	{ "verify_applies_nothing", test_image_verify_applies_nothing },
	{ "header_fields_and_base", test_image_header_fields_and_base },
	{ "rewrite_needs_flag", test_image_rewrite_needs_flag },
	{ "header_rewrites", test_image_header_rewrites },
	{ "over_pipe", test_image_over_pipe },
	{ "zero_page_detection", test_image_zero_page_detection },
	{ "index_and_fetch", test_image_index_and_fetch },
	{ "fetch_refusals", test_image_fetch_refusals },
	{ "index_bit_flip_everywhere", test_image_index_bit_flip_everywhere },
	{ "truncated_everywhere", test_image_truncated_everywhere },
	{ "bit_flip_everywhere", test_image_bit_flip_everywhere },
	{ "wrong_version", test_image_wrong_version },
	{ "hostile_sections", test_image_hostile_sections },
	{ "payload_checksum_mismatch", test_image_payload_checksum_mismatch },
	{ NULL, NULL },
};
