/* SPDX-License-Identifier: MIT */
#include "kernel/util/bitmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t *bitmap_alloc(size_t nbits)
{
	return calloc(BITMAP_WORDS(nbits) ? BITMAP_WORDS(nbits) : 1,
		      sizeof(uint64_t));
}

void bitmap_free(uint64_t *map)
{
	free(map);
}

static inline uint64_t word_mask(size_t from, size_t to)
{
	/* Bits [from, to) of one word, 0 <= from < to <= 64. */
	uint64_t hi = to == 64 ? ~0ULL : (1ULL << to) - 1;

	return hi & ~((1ULL << from) - 1);
}

void bitmap_set_range_atomic(uint64_t *map, size_t start, size_t n)
{
	size_t end = start + n;

	while (start < end) {
		size_t w = start / 64;
		size_t from = start % 64;
		size_t to = end - w * 64 > 64 ? 64 : end - w * 64;
		uint64_t mask = word_mask(from, to);

		if ((__atomic_load_n(&map[w], __ATOMIC_RELAXED) & mask) != mask)
			__atomic_fetch_or(&map[w], mask, __ATOMIC_RELEASE);
		start = (w + 1) * 64;
	}
}

void bitmap_clear_range(uint64_t *map, size_t start, size_t n)
{
	size_t end = start + n;

	while (start < end) {
		size_t w = start / 64;
		size_t to = end - w * 64 > 64 ? 64 : end - w * 64;

		map[w] &= ~word_mask(start % 64, to);
		start = (w + 1) * 64;
	}
}

void bitmap_fill(uint64_t *map, size_t nbits)
{
	size_t full = nbits / 64;

	memset(map, 0xff, full * sizeof(uint64_t));
	if (nbits % 64)
		map[full] = word_mask(0, nbits % 64);
}

void bitmap_zero(uint64_t *map, size_t nbits)
{
	memset(map, 0, BITMAP_WORDS(nbits) * sizeof(uint64_t));
}

size_t bitmap_weight(const uint64_t *map, size_t nbits)
{
	size_t i, n = 0, words = BITMAP_WORDS(nbits);

	for (i = 0; i < words; i++) {
		uint64_t w = __atomic_load_n(&map[i], __ATOMIC_RELAXED);

		if (i == words - 1 && nbits % 64)
			w &= word_mask(0, nbits % 64);
		n += (size_t)__builtin_popcountll(w);
	}
	return n;
}

void bitmap_or_at_atomic(uint64_t *dst, size_t dst_off, const uint64_t *src,
			 size_t nbits)
{
	size_t i, words = BITMAP_WORDS(nbits);
	unsigned int shift = dst_off % 64;
	size_t base = dst_off / 64;

	for (i = 0; i < words; i++) {
		uint64_t w = src[i];

		if (i == words - 1 && nbits % 64)
			w &= word_mask(0, nbits % 64);
		if (!w)
			continue;
		if (!shift) {
			__atomic_fetch_or(&dst[base + i], w, __ATOMIC_RELEASE);
			continue;
		}
		if (w << shift)
			__atomic_fetch_or(&dst[base + i], w << shift,
					  __ATOMIC_RELEASE);
		if (w >> (64 - shift))
			__atomic_fetch_or(&dst[base + i + 1], w >> (64 - shift),
					  __ATOMIC_RELEASE);
	}
}

size_t bitmap_take_atomic(uint64_t *src, uint64_t *dst, size_t nbits)
{
	size_t i, n = 0, words = BITMAP_WORDS(nbits);

	for (i = 0; i < words; i++) {
		uint64_t w = 0;

		if (__atomic_load_n(&src[i], __ATOMIC_RELAXED))
			w = __atomic_exchange_n(&src[i], 0, __ATOMIC_ACQ_REL);
		dst[i] = w;
		n += (size_t)__builtin_popcountll(w);
	}
	return n;
}

size_t bitmap_next_set(const uint64_t *map, size_t nbits, size_t start)
{
	size_t w;
	uint64_t bits;

	if (start >= nbits)
		return nbits;
	w = start / 64;
	bits = __atomic_load_n(&map[w], __ATOMIC_RELAXED) &
	       ~((1ULL << (start % 64)) - 1);
	for (;;) {
		if (bits) {
			size_t bit = w * 64 + (size_t)__builtin_ctzll(bits);

			return bit < nbits ? bit : nbits;
		}
		if (++w >= BITMAP_WORDS(nbits))
			return nbits;
		bits = __atomic_load_n(&map[w], __ATOMIC_RELAXED);
	}
}
