/* SPDX-License-Identifier: MIT */
#ifndef VMM_UTIL_BITMAP_H
#define VMM_UTIL_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Bitmaps are arrays of uint64_t, bit n in word n / 64, at position n % 64,
 * the layout KVM uses for its dirty log. The *_atomic variants may run
 * concurrently with each other from any thread; the plain ones need the
 * caller to own the bitmap.
 */

#define BITS_PER_WORD 64
#define BITMAP_WORDS(nbits) (((nbits) + BITS_PER_WORD - 1) / BITS_PER_WORD)

uint64_t *bitmap_alloc(size_t nbits);
void bitmap_free(uint64_t *map);

static inline bool bitmap_test(const uint64_t *map, size_t bit)
{
	return (__atomic_load_n(&map[bit / 64], __ATOMIC_RELAXED) >>
		(bit % 64)) &
	       1;
}

static inline void bitmap_set(uint64_t *map, size_t bit)
{
	map[bit / 64] |= 1ULL << (bit % 64);
}

static inline void bitmap_set_atomic(uint64_t *map, size_t bit)
{
	uint64_t mask = 1ULL << (bit % 64);

	/* A plain load first avoids dirtying the cache line when set. */
	if (!(__atomic_load_n(&map[bit / 64], __ATOMIC_RELAXED) & mask))
		__atomic_fetch_or(&map[bit / 64], mask, __ATOMIC_RELEASE);
}

/* Sets bits [start, start + n) atomically. */
void bitmap_set_range_atomic(uint64_t *map, size_t start, size_t n);

/* Clears bits [start, start + n) (not atomic). */
void bitmap_clear_range(uint64_t *map, size_t start, size_t n);

/* Sets all of [0, nbits), leaving bits past nbits clear. */
void bitmap_fill(uint64_t *map, size_t nbits);
void bitmap_zero(uint64_t *map, size_t nbits);

size_t bitmap_weight(const uint64_t *map, size_t nbits);

/*
 * ORs @nbits bits of @src (starting at bit 0) into @dst starting at bit
 * @dst_off, atomically per destination word. @dst_off need not be aligned.
 */
void bitmap_or_at_atomic(uint64_t *dst, size_t dst_off, const uint64_t *src,
			 size_t nbits);

/*
 * Moves every set bit of @src into @dst (which it overwrites) and clears
 * @src, word by word with atomic exchanges, so a bit set concurrently
 * lands either in this take or in @src for the next one, never lost.
 * Returns the number of bits moved.
 */
size_t bitmap_take_atomic(uint64_t *src, uint64_t *dst, size_t nbits);

/* Returns the first set bit >= @start, or @nbits if none. */
size_t bitmap_next_set(const uint64_t *map, size_t nbits, size_t start);

#define bitmap_for_each_set(bit, map, nbits)                              \
	for ((bit) = bitmap_next_set((map), (nbits), 0); (bit) < (nbits); \
	     (bit) = bitmap_next_set((map), (nbits), (bit) + 1))

#endif /* VMM_UTIL_BITMAP_H */
