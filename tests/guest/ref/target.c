/* SPDX-License-Identifier: MIT */
/*
 * The example fuzz target: a deliberately buggy parser of a small record
 * format, built with -fsanitize-coverage=trace-pc so that each basic
 * block it runs bumps an edge counter in the harness's coverage map
 * (fuzz.c). Only this file is instrumented: coverage is this target's
 * edges, not the rest of the guest.
 *
 * Input: "VM" then a command byte.
 *   'P' records: { type, len, len bytes }...
 *        type 'C' whose first byte is 0xc0 or more dereferences an
 *        address outside the guest's page tables: a page fault (the bug
 *        to find);
 *        type 'X' whose bytes are "BUG" reports a crash explicitly.
 *   'W' n16: writes n pages (at most 1024) of the scratch area.
 *   'S' a b: sets the UART's interrupt enable to a, its scratch to b.
 *   'R': one virtio-rng request, if the device is there.
 *   'H': spins for ever (the VMM's time-out ends it).
 */
#include "fuzz.h"

static int parse_records(const uint8_t *p, size_t n)
{
	unsigned int sum = 0;

	while (n >= 2) {
		uint8_t type = p[0], len = p[1];

		p += 2;
		n -= 2;
		if (len > n)
			return 0; /* a cut record ends the input */
		switch (type) {
		case 'A':
			for (unsigned int i = 0; i < len; i++)
				sum += p[i];
			break;
		case 'C':
			/* The bug: the first byte is trusted as a table index
			 * with only 0x40 entries. */
			if (len >= 1 && p[0] >= 0xc0) {
				volatile uint64_t *bad =
					(volatile uint64_t
						 *)(0x100000000000ULL +
						    p[0] * 8ULL);
				*bad = sum;
			}
			break;
		case 'X':
			if (len == 3 && p[0] == 'B' && p[1] == 'U' &&
			    p[2] == 'G')
				return 0x42;
			break;
		default:
			break;
		}
		p += len;
		n -= len;
	}
	return 0;
}

int fuzz_target(const uint8_t *in, size_t n, const struct fuzz_env *env)
{
	size_t i, pages;

	if (n < 3 || in[0] != 'V' || in[1] != 'M')
		return 0;
	switch (in[2]) {
	case 'P':
		return parse_records(in + 3, n - 3);
	case 'W':
		pages = n >= 5 ? (size_t)(in[3] | in[4] << 8) : 1;
		if (pages > 1024)
			pages = 1024;
		if (pages > env->scratch_pages)
			pages = env->scratch_pages;
		for (i = 0; i < pages; i++)
			*(volatile uint64_t *)(env->scratch + i * 4096) = i + 1;
		return 0;
	case 'S':
		if (n >= 5)
			fuzz_uart_poke(in[3], in[4]);
		return 0;
	case 'R':
		fuzz_rng();
		return 0;
	case 'H':
		for (;;)
			__asm__ volatile("pause");
	}
	return 0;
}
