/* SPDX-License-Identifier: MIT */
#include "kernel/util/bitmap.h"

#include <pthread.h>

#include "tests/unit/unit_tests.h"

static void test_bitmap_set_range_and_weight(void)
{
	size_t starts[] = { 0, 1, 63, 64, 65, 127, 200 };
	size_t lens[] = { 1, 2, 63, 64, 65, 128, 300 };
	unsigned int i, j;

	for (i = 0; i < ARRAY_SIZE(starts); i++) {
		for (j = 0; j < ARRAY_SIZE(lens); j++) {
			uint64_t *m = bitmap_alloc(1024);
			size_t b, n = 0;

			bitmap_set_range_atomic(m, starts[i], lens[j]);
			TEST_ASSERT(bitmap_weight(m, 1024) == lens[j],
				    "start %zu len %zu: weight %zu", starts[i],
				    lens[j], bitmap_weight(m, 1024));
			bitmap_for_each_set(b, m, 1024)
			{
				TEST_ASSERT(b >= starts[i] &&
						    b < starts[i] + lens[j],
					    "bit %zu outside [%zu, %zu)", b,
					    starts[i], starts[i] + lens[j]);
				n++;
			}
			TEST_ASSERT(n == lens[j], "iterated %zu of %zu", n,
				    lens[j]);
			bitmap_free(m);
		}
	}
}

static void test_bitmap_fill_respects_size(void)
{
	uint64_t m[4] = { 0 };

	bitmap_fill(m, 130);
	TEST_ASSERT(bitmap_weight(m, 256) == 130, "weight %zu",
		    bitmap_weight(m, 256));
	TEST_ASSERT(m[2] == 3 && m[3] == 0, "tail words %#llx %#llx",
		    (unsigned long long)m[2], (unsigned long long)m[3]);
	bitmap_zero(m, 256);
	TEST_ASSERT(bitmap_weight(m, 256) == 0, "not zeroed");
}

static void test_bitmap_or_at_unaligned(void)
{
	unsigned int shift;

	for (shift = 0; shift < 130; shift += 13) {
		uint64_t src[3] = { 0x8000000000000001ULL, 0x5ULL,
				    0xffffffffffffffffULL };
		uint64_t dst[6] = { 0 };
		size_t b;

		bitmap_or_at_atomic(dst, shift, src, 140);
		for (b = 0; b < 140; b++)
			TEST_ASSERT(bitmap_test(dst, shift + b) ==
					    bitmap_test(src, b),
				    "shift %u bit %zu: %d vs %d", shift, b,
				    bitmap_test(dst, shift + b),
				    bitmap_test(src, b));
		TEST_ASSERT(
			bitmap_weight(dst, 384) == bitmap_weight(src, 140),
			"shift %u: weight %zu vs %zu (bits past the end copied?)",
			shift, bitmap_weight(dst, 384),
			bitmap_weight(src, 140));
	}
}

static void test_bitmap_take_clears(void)
{
	uint64_t *m = bitmap_alloc(300), *out = bitmap_alloc(300);

	bitmap_set(m, 0);
	bitmap_set(m, 299);
	bitmap_set(m, 64);
	TEST_ASSERT(bitmap_take_atomic(m, out, 300) == 3, "took %zu",
		    bitmap_weight(out, 300));
	TEST_ASSERT(bitmap_weight(m, 300) == 0, "source not cleared");
	TEST_ASSERT(bitmap_test(out, 0) && bitmap_test(out, 64) &&
			    bitmap_test(out, 299),
		    "bits missing from the take");
	TEST_ASSERT(bitmap_take_atomic(m, out, 300) == 0,
		    "second take non-empty");
	TEST_ASSERT(bitmap_next_set(out, 300, 0) == 300, "out not overwritten");
	bitmap_free(m);
	bitmap_free(out);
}

#define RACE_BITS (1u << 16)

struct race {
	uint64_t *map;
	unsigned int stride, first;
};

static void *race_setter(void *arg)
{
	struct race *r = arg;
	unsigned int b;

	for (b = r->first; b < RACE_BITS; b += r->stride)
		bitmap_set_atomic(r->map, b);
	return NULL;
}

/* Bits set while another thread takes must land in exactly one take. */
static void test_bitmap_take_concurrent_loses_nothing(void)
{
	uint64_t *m = bitmap_alloc(RACE_BITS);
	uint64_t *acc = bitmap_alloc(RACE_BITS);
	uint64_t *out = bitmap_alloc(RACE_BITS);
	struct race r[2] = { { m, 2, 0 }, { m, 2, 1 } };
	pthread_t t[2];
	size_t total = 0, w;
	int i;

	for (i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, race_setter, &r[i]);
	for (i = 0; i < 200; i++) {
		total += bitmap_take_atomic(m, out, RACE_BITS);
		for (w = 0; w < BITMAP_WORDS(RACE_BITS); w++) {
			TEST_ASSERT(!(acc[w] & out[w]),
				    "word %zu taken twice: %#llx", w,
				    (unsigned long long)(acc[w] & out[w]));
			acc[w] |= out[w];
		}
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	total += bitmap_take_atomic(m, out, RACE_BITS);
	for (w = 0; w < BITMAP_WORDS(RACE_BITS); w++)
		acc[w] |= out[w];
	TEST_ASSERT(total == RACE_BITS, "took %zu bits of %u", total,
		    RACE_BITS);
	TEST_ASSERT(bitmap_weight(acc, RACE_BITS) == RACE_BITS,
		    "union holds %zu bits", bitmap_weight(acc, RACE_BITS));
	bitmap_free(m);
	bitmap_free(acc);
	bitmap_free(out);
}

const struct test_case bitmap_tests[] = {
	{ "set_range_and_weight", test_bitmap_set_range_and_weight },
	{ "fill_respects_size", test_bitmap_fill_respects_size },
	{ "or_at_unaligned", test_bitmap_or_at_unaligned },
	{ "take_clears", test_bitmap_take_clears },
	{ "take_concurrent_loses_nothing",
	  test_bitmap_take_concurrent_loses_nothing },
	{ NULL, NULL },
};
