/* SPDX-License-Identifier: MIT */
#include "tests/unit/image_gen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/stream.h"

static uint32_t gen_next(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void gen_text(uint8_t *p, uint32_t *s)
{
	static const char *const words[] = { "vcpu ",  "memory ",  "page ",
					     "dirty ", "the ",	   "snapshot ",
					     "and ",   "restore\n" };
	size_t off = 0;

	while (off < 4096) {
		const char *w = words[gen_next(s) % 8];
		size_t n = strlen(w);

		n = n < 4096 - off ? n : 4096 - off;
		memcpy(p + off, w, n);
		off += n;
	}
}

void gen_pages(uint8_t *mem, uint64_t nr_pages, enum gen_kind kind,
	       uint32_t seed)
{
	uint32_t s = seed | 1;
	uint64_t pg;
	size_t i;

	for (pg = 0; pg < nr_pages; pg++) {
		uint8_t *p = mem + pg * 4096;
		enum gen_kind k = kind;
		unsigned int nearly = 0;

		if (k == GEN_MIXED) {
			unsigned int r = gen_next(&s) % 4;

			k = r == 3 ? GEN_ZERO : (enum gen_kind)(r + 1);
			nearly = r == 3 && (gen_next(&s) & 1);
		}
		switch (k) {
		case GEN_ZERO:
		case GEN_MIXED:
			memset(p, 0, 4096);
			/* One byte set somewhere: not a zero page. */
			if (nearly)
				p[gen_next(&s) % 4096] = 1;
			break;
		case GEN_RANDOM:
			for (i = 0; i < 4096; i += 4) {
				uint32_t v = gen_next(&s);

				memcpy(p + i, &v, 4);
			}
			break;
		case GEN_TEXT:
			gen_text(p, &s);
			break;
		}
	}
}

unsigned int gen_image_threads;

int gen_image(enum image_codec codec, bool aligned, const uint8_t *mem,
	      uint64_t nr_pages, const uint64_t *bitmap, void **out,
	      size_t *len)
{
	static const char feat[] = "cpu-features";
	static const char state_a[] = "\x08\x01\x12\x03"
				      "abc";
	struct image_header hdr = {
		.codec = codec,
		.aligned = aligned,
		.cpu_features = feat,
		.cpu_features_len = sizeof(feat),
		.vcpu_model = "test-model",
		.flags = 5,
	};
	uint8_t layout[40] = { 1, 2, 3 };
	struct stream *s;
	struct image *img;
	const void *data;
	int ret;

	ret = stream_open_mem_write(&s);
	if (ret < 0)
		return ret;
	ret = image_writer_create(s, &hdr, &img);
	if (ret < 0)
		goto err_close;
	ret = image_set_threads(img, gen_image_threads);
	if (!ret)
		ret = image_write_state(img, GEN_STATE_A, state_a,
					sizeof(state_a));
	if (!ret)
		ret = image_write_layout(img, GEN_LAYOUT, layout,
					 sizeof(layout));
	if (!ret)
		ret = image_write_pages(img, GEN_SEG, mem, nr_pages, bitmap);
	if (!ret)
		ret = image_write_state(img, GEN_STATE_B, "", 0);
	if (!ret)
		ret = image_finish(img, NULL);
	image_destroy(img);
	if (ret < 0)
		goto err_close;
	data = stream_mem_data(s, len);
	*out = malloc(*len);
	ret = -ENOMEM;
	if (!*out)
		goto err_close;
	memcpy(*out, data, *len);
	ret = 0;
err_close:
	stream_close(s);
	return ret;
}
