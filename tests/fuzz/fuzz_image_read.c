/* SPDX-License-Identifier: MIT */
/*
 * The image reader against arbitrary input. The first byte picks a mode:
 * even, the rest is read as an image as it is; odd, the rest shapes a
 * small real image (codec, layout, page kinds, pages written) and then
 * mutates it (offset, xor pairs), so the harness reaches deep sections
 * without a seed corpus. The reader must refuse with a reason or accept
 * an image whose pages all lie in the declared segment; a mutated image
 * that changed a byte must be refused.
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

/* Returns 0 if the image was accepted. */
static int fuzz_read(const uint8_t *data, size_t size, bool verify)
{
	static uint8_t mem[FUZZ_PAGES * 4096];
	struct image_sink sink = { .pages = fuzz_pages };
	struct stream *s;
	struct image *img;
	int ret;

	if (stream_open_mem_read(data, size, &s))
		abort();
	if (image_reader_create(s, 0, &img))
		abort();
	ret = image_add_segment(img, GEN_SEG, FUZZ_PAGES, mem);
	if (!ret)
		ret = verify ? image_verify(img) : image_read(img, &sink);
	if (ret < 0 && !image_error(img)[0])
		abort(); /* refused without a reason */
	image_destroy(img);
	stream_close(s);
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
	if (fuzz_read(img, len, false))
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
	if (fuzz_read(img, len, false) == 0 && changed) {
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
	fuzz_read(img, len, true);
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
	fuzz_read(data + 1, size - 1, false);
	fuzz_read(data + 1, size - 1, true);
	return 0;
}
