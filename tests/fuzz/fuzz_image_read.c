/* SPDX-License-Identifier: MIT */
/*
 * The image reader against arbitrary input. The first byte picks a mode:
 * even, the rest is read as an image as it is; odd, the rest shapes a
 * small real image (codec, layout, page kinds, pages written) and then
 * mutates it (offset, xor pairs), so the harness reaches deep sections
 * without a seed corpus. The reader must refuse with a reason or accept
 * an image whose pages all lie in the declared segment; a mutated image
 * that changed a byte must be refused, both by a whole read and by the
 * random access of a lazy restore (index, then fetch every batch); a
 * whole read through codec worker threads must reach the same verdict.
 */
#include <stdlib.h>
#include <string.h>

#include "kernel/util/bitmap.h"
#include "snapshot/image.h"
#include "snapshot/stream.h"
#include "tests/fuzz/fuzz.h"
#include "tests/unit/image_gen.h"

#define FUZZ_PAGES 16

static int fuzz_pages(void *opaque, uint32_t seg, uint64_t first, uint64_t nr,
		      const void *data, uint64_t file_off)
{
	(void)opaque;
	(void)data;
	(void)file_off;
	if (seg != GEN_SEG || first + nr > FUZZ_PAGES || first + nr < first)
		abort(); /* delivered pages outside the segment */
	return 0;
}

struct batches {
	uint64_t off[FUZZ_PAGES + 1];
	size_t n;
};

static int fuzz_batch(void *opaque, const struct image_batch *b)
{
	struct batches *o = opaque;
	size_t i;

	for (i = 0; i < b->nr_runs; i++)
		fuzz_pages(NULL, b->seg, b->runs[2 * i], b->runs[2 * i + 1],
			   NULL, 0);
	if (!b->zero) {
		if (o->n == FUZZ_PAGES + 1)
			abort(); /* more data batches than pages */
		o->off[o->n++] = b->offset;
	}
	return 0;
}

/* FUZZ_THREADS: a whole read through two codec workers (image.h's
 * image_set_threads()), which must reach the same verdict. */
enum fuzz_mode { FUZZ_READ, FUZZ_VERIFY, FUZZ_INDEX, FUZZ_THREADS };

/* Returns 0 if the image was accepted. FUZZ_INDEX reads it as a lazy
 * restore does: image_index(), then image_fetch() of each data batch. */
static int fuzz_read(const uint8_t *data, size_t size, enum fuzz_mode mode)
{
	static uint8_t mem[FUZZ_PAGES * 4096];
	struct batches o = { .n = 0 };
	struct image_sink sink = { .opaque = &o,
				   .pages = fuzz_pages,
				   .batch = fuzz_batch };
	struct stream *s;
	struct image *img;
	size_t i;
	int ret;

	if (stream_open_mem_read(data, size, &s))
		abort();
	if (image_reader_create(s, 0, &img) ||
	    image_set_threads(img, mode == FUZZ_THREADS ? 2 : 0))
		abort();
	ret = image_add_segment(img, GEN_SEG, FUZZ_PAGES,
				mode == FUZZ_INDEX ? NULL : mem);
	if (!ret && mode == FUZZ_INDEX) {
		ret = image_index(img, &sink);
		for (i = 0; !ret && i < o.n; i++)
			ret = image_fetch(img, o.off[i], &sink);
	} else if (!ret) {
		ret = mode == FUZZ_VERIFY ? image_verify(img) :
					    image_read(img, &sink);
	}
	if (ret < 0 && !image_error(img)[0])
		abort(); /* refused without a reason */
	image_destroy(img);
	stream_close(s);
	return ret;
}

/* A whole read without and with workers: the same verdict (accepted or
 * refused; the reason may differ, as where a worker finds the damage). */
static int fuzz_read_both(const uint8_t *data, size_t size)
{
	int ret = fuzz_read(data, size, FUZZ_READ);

	if ((fuzz_read(data, size, FUZZ_THREADS) == 0) != (ret == 0))
		abort(); /* the workers changed the verdict */
	return ret;
}

static void fuzz_mutated(const uint8_t *data, size_t size)
{
	static uint8_t mem[FUZZ_PAGES * 4096];
	uint64_t bm[1] = { 0 };
	enum image_codec codec;
	uint8_t *img;
	bool changed = false;
	size_t len, i;

	if (size < 4)
		return;
	codec = (enum image_codec)(data[0] % 3);
	gen_pages(mem, FUZZ_PAGES, (enum gen_kind)(data[0] / 3 % 4), data[1]);
	bm[0] = data[2] | (uint64_t)data[3] << 8;
	if (gen_image(codec, codec == IMAGE_CODEC_NONE && (data[0] & 0x80), mem,
		      FUZZ_PAGES, bm[0] ? bm : NULL, (void **)&img, &len))
		abort();
	if (fuzz_read(img, len, FUZZ_READ) || fuzz_read(img, len, FUZZ_INDEX))
		abort(); /* a real image refused */
	for (i = 4; i + 3 <= size; i += 3) {
		size_t off = (data[i] | (size_t)data[i + 1] << 8) % len;

		if (data[i + 2]) {
			img[off] ^= data[i + 2];
			changed = true;
		}
	}
	/* A cut, when the input ends in a spare byte. */
	if ((size - 4) % 3 == 1 && data[size - 1] && len) {
		len = data[size - 1] * len / 256;
		changed = true;
	}
	if ((fuzz_read_both(img, len) == 0 ||
	     fuzz_read(img, len, FUZZ_INDEX) == 0) &&
	    changed && FUZZ_CHANGES_REFUSED) {
		/* Xors may cancel out: only a real change must be refused. */
		uint8_t *again;
		size_t len2;

		if (gen_image(codec,
			      codec == IMAGE_CODEC_NONE && (data[0] & 0x80),
			      mem, FUZZ_PAGES, bm[0] ? bm : NULL,
			      (void **)&again, &len2))
			abort();
		if (len2 != len || memcmp(again, img, len))
			abort(); /* a changed image accepted */
		free(again);
	}
	fuzz_read(img, len, FUZZ_VERIFY);
	free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1) {
		fuzz_mutated(data + 1, size - 1);
		return 0;
	}
	fuzz_read_both(data + 1, size - 1);
	fuzz_read(data + 1, size - 1, FUZZ_VERIFY);
	fuzz_read(data + 1, size - 1, FUZZ_INDEX);
	return 0;
}
